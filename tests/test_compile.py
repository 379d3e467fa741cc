"""torch.compile takes the decoder whole: the RPE ops are torch.library custom ops (their
schemas, fake implementations and autograd pass torch.library.opcheck); a QueryDecoderLayer,
and the transformer head's training decoder, compile with fullgraph=True (no graph break)
and give the eager outputs and gradients."""
import importlib

import pytest
import torch
from mmdet3d.registry import MODELS

from ikne_plugin.models.layers.query_decoder_layer import QueryDecoderLayer
from ikne_plugin.ops import ext_loader

# (the package exports the ops' functions under their modules' names)
value_module = importlib.import_module('ikne_plugin.ops.rpe_attention_value')
bias_module = importlib.import_module('ikne_plugin.ops.rpe_attention_bias')

pytestmark = pytest.mark.skipif(ext_loader.load_ext() is None, reason='the custom ops call the extension')


def rpe_inputs(seed=0, bins=6):
    g = torch.Generator().manual_seed(seed)
    attn = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64).softmax(-1)
    rel_idx = torch.randint(0, bins, (2, 4, 5, 3), generator=g, dtype=torch.int32)
    table = torch.randn(3, bins, 3, 7, generator=g, dtype=torch.float64)
    return attn, rel_idx, table


@pytest.mark.parametrize('save_hist', [False, True])
def test_value_op_passes_opcheck(save_hist):
    attn, rel_idx, table = rpe_inputs()
    torch.library.opcheck(value_module._forward_op,
                          (attn.requires_grad_(), rel_idx, table.requires_grad_(save_hist), save_hist))


def test_bias_op_passes_opcheck():
    g = torch.Generator().manual_seed(1)
    bins = torch.randn(2, 3, 4, 18, generator=g, dtype=torch.float64, requires_grad=True)
    rel_idx = torch.randint(0, 6, (2, 4, 5, 3), generator=g, dtype=torch.int64)
    torch.library.opcheck(bias_module._forward_op, (bins, rel_idx))


def real_and_fake(op, *args):
    """The op's outputs on ``args`` and its fake implementation's on fake copies of them."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    real = op(*args)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
    return real, fake


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))])
def test_fake_kernels_give_the_real_strides(device):
    """Inductor lays its buffers out as the fake kernels say (and asserts it at run time):
    each real output has the fake one's shape and strides."""
    attn, rel_idx, table = (t.to(device) for t in rpe_inputs())
    grad_out = torch.randn(*attn.shape[:3], table.shape[3], dtype=attn.dtype, device=device)
    out, hist = value_module._forward_op(attn, rel_idx, table, True)
    bins = torch.randn(*attn.shape[:3], 3 * table.shape[1], dtype=attn.dtype, device=device)
    calls = [(value_module._forward_op, attn, rel_idx, table, True),
             (value_module._backward_op, grad_out, rel_idx, table, hist, True),
             (bias_module._forward_op, bins, rel_idx),
             (bias_module._backward_op, attn, rel_idx, table.shape[1])]
    for op, *args in calls:
        real, fake = real_and_fake(op, *args)
        for r, f in zip(*(x if isinstance(x, tuple) else (x,) for x in (real, fake))):
            assert (r.shape, r.stride(), r.dtype) == (f.shape, f.stride(), f.dtype), op


def test_decoder_layer_compiles_whole():
    torch.manual_seed(0)
    batch, queries, superpoints, channels, bins = 2, 6, 9, 16, 48
    layer = QueryDecoderLayer(d_model=channels, num_heads=4, ffn_dim=32, rpe_num_bins=bins,
                              first_layer=True).double()
    for table in (layer.relative_pos_query_table, layer.relative_pos_key_table,
                  layer.relative_pos_value_table):
        torch.nn.init.normal_(table)  # (zeros at initialisation would hide the RPE terms)
    # queries [B * Q, C] and superpoints [B * S, C], as the layer takes them
    inputs = [torch.randn(batch * queries, channels, dtype=torch.float64) for _ in range(3)]
    inputs += [torch.randn(batch * superpoints, channels, dtype=torch.float64, requires_grad=True)
               for _ in range(2)]
    rel_idx = torch.randint(0, bins, (batch, queries, superpoints, 3), dtype=torch.int32)
    blocked = torch.rand(batch, queries, superpoints) < 0.3
    blocked[..., 0] = False  # every query keeps a superpoint
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)  # fails on a graph break

    results = []
    for run in (layer, compiled):
        memory_proj = QueryDecoderLayer.project_memory([layer], *inputs[3:])[0]
        out = run(*inputs[:3], memory_proj, rel_idx, blocked)
        grads = torch.autograd.grad(out.square().sum(), [inputs[3], *layer.parameters()])
        results.append((out, grads))
    torch.testing.assert_close(results[1], results[0])


# On the CPU with aot_eager (no compiler needed); on the GPU with inductor, as users run it
@pytest.mark.parametrize('device, backend', [
    ('cpu', 'aot_eager'),
    pytest.param('cuda', 'inductor', marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA'))])
def test_training_decoder_compiles_whole(device, backend):
    """``compile_decoder`` compiles the head's decoder (fullgraph: no graph break), on
    superpoints padded to ``graph_bucket``, with eager's outputs and gradients; also when the
    superpoint counts and the batch size change between steps, as in training (recompiled,
    with dynamic shapes from the second size on)."""
    torch.manual_seed(0)
    cfg = dict(type='IKNETransformerHead', in_channels=8, num_classes=4, num_queries=6, num_layers=3,
               d_model=16, num_heads=2, ffn_dim=32, graph_bucket=16)
    eager = MODELS.build(cfg).to(device, torch.float64).train()
    compiled = MODELS.build(dict(cfg, compile_decoder=dict(backend=backend, fullgraph=True)))
    compiled.to(device, torch.float64).train().load_state_dict(eager.state_dict())
    for step_lengths in [(30, 20), (50, 40), (70, )]:  # padded to multiples of 16 when compiled
        sp_feats = [torch.randn(n, 8, dtype=torch.float64, device=device, requires_grad=True) for n in step_lengths]
        sp_xyz = [torch.rand(n, 3, dtype=torch.float64, device=device) * 4 for n in step_lengths]
        results = []
        for head in (eager, compiled):
            out = head(dict(sp_feats=sp_feats, sp_xyz=sp_xyz))
            loss = out['queries'].square().sum() + sum(
                layer['mask_logits'].sigmoid().sum() + layer['cls_logits'].square().sum()
                + layer['centers'].sum() for layer in out['layers'])
            wrt = [*sp_feats, *head.parameters()]
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
            # (a parameter that does not reach the loss gets None eagerly, zeros compiled)
            results.append((out, [torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads)]))
        torch.testing.assert_close(results[1], results[0])
    assert compiled._compiled_decode is not None
