"""IKNETransformerHead: shapes, batching, attention masks, contextual RPE, gradients, inference."""
import math

import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample

from ikne_plugin.models.layers import (key_rpe_bias, query_rpe_bias, relative_position_bins,
                                       value_table_to_op_layout)
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT

SMALL = dict(type='IKNETransformerHead', in_channels=8, num_classes=4, num_queries=6, num_layers=3, d_model=32,
             num_heads=4, ffn_dim=64, rpe_num_bins=8, rpe_bin_size=0.25)


def small_head(**overrides):
    torch.manual_seed(0)
    head = MODELS.build({**SMALL, **overrides})
    # MAFT zero-initialises the centre offsets; randomise them so refinement is exercised.
    for p in head.parameters():
        if p.abs().sum() == 0 and p.dim() > 0:
            torch.nn.init.normal_(p, std=0.1)
    return head


def scene(num_sp, channels=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_sp, channels, generator=g, dtype=dtype), torch.rand(num_sp, 3, generator=g, dtype=dtype) * 3


def test_output_shapes():
    head = small_head()
    (f0, x0), (f1, x1) = scene(20), scene(13, seed=1)
    out = head(dict(sp_feats=[f0, f1], sp_xyz=[x0, x1]))
    assert len(out['layers']) == 3 and out['sp_counts'] == [20, 13]
    for layer in out['layers']:
        assert layer['cls_logits'].shape == (2, 6, 5)
        assert layer['scores'].shape == (2, 6, 1)
        assert layer['centers'].shape == (2, 6, 3)
        assert layer['mask_logits'].shape == (2, 6, 20)
        assert (layer['mask_logits'][1, :, 13:] == PAD_LOGIT).all()
    assert out['queries'].shape == (2, 6, 32)
    # iterative refinement moves the centres from layer to layer
    assert not torch.allclose(out['layers'][0]['centers'], out['layers'][2]['centers'])


def test_batch_equals_scenes_alone():
    """Padding and key masks: a scene gives the same outputs alone and in a batch (its masks
    followed by PAD_LOGIT up to the batch's most superpoints)."""
    head = small_head().double()
    scenes = [scene(17, dtype=torch.float64), scene(9, seed=3, dtype=torch.float64)]
    batched = head(dict(sp_feats=[s[0] for s in scenes], sp_xyz=[s[1] for s in scenes]))
    assert batched['sp_counts'] == [17, 9]
    for b, (f, x) in enumerate(scenes):
        alone = head(dict(sp_feats=[f], sp_xyz=[x]))
        n = len(f)
        for lb, la in zip(batched['layers'], alone['layers']):
            for key in ('cls_logits', 'scores', 'centers'):
                torch.testing.assert_close(lb[key][b], la[key][0], atol=1e-10, rtol=1e-10)
            torch.testing.assert_close(lb['mask_logits'][b, :, :n], la['mask_logits'][0], atol=1e-10, rtol=1e-10)
            assert (lb['mask_logits'][b, :, n:] == PAD_LOGIT).all()


def test_full_configuration_on_a_tiny_scene():
    torch.manual_seed(0)
    head = MODELS.build(dict(type='IKNETransformerHead', in_channels=32)).eval()
    f, x = scene(50, channels=32)
    with torch.no_grad():
        out = head(dict(sp_feats=[f], sp_xyz=[x]))
    last = out['layers'][-1]
    assert len(out['layers']) == 6
    assert last['cls_logits'].shape == (1, 400, 19) and last['mask_logits'].shape == (1, 400, 50)
    assert all(torch.isfinite(v).all() for v in (last['cls_logits'], last['scores'], last['centers']))


def test_fully_blocked_rows_are_unblocked():
    head = small_head(attn_mask_thr=0.1)
    logits = torch.tensor([[[-5.0, -5.0, -5.0, 9.0],   # every valid superpoint below 0.1: unblocked
                            [-5.0, 5.0, -5.0, 9.0]]])  # partly blocked: kept
    padding = torch.tensor([[False, False, False, True]])
    blocked = head._attention_block_mask(logits, padding)
    assert blocked.tolist() == [[[False, False, False, True], [True, False, True, True]]]


def test_relative_position_bins_match_the_definition():
    g = torch.Generator().manual_seed(0)
    q, k = torch.rand(2, 3, 3, generator=g) * 4 - 2, torch.rand(2, 5, 3, generator=g) * 4 - 2
    idx = relative_position_bins(q, k, num_bins=8, bin_size=0.25)
    assert idx.shape == (2, 3, 5, 3) and idx.dtype == torch.int32
    for b in range(2):
        for i in range(3):
            for j in range(5):
                for a in range(3):
                    expected = min(max(math.floor((q[b, i, a] - k[b, j, a]).item() / 0.25), -4), 3) + 4
                    assert idx[b, i, j, a] == expected


def test_rpe_biases_and_value_layout_match_loops():
    g = torch.Generator().manual_seed(1)
    B, H, Q, S, D, L = 2, 2, 3, 4, 5, 6
    q = torch.randn(B, H, Q, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, S, D, generator=g, dtype=torch.float64)
    table = torch.randn(H, D, 3 * L, generator=g, dtype=torch.float64)
    rel_idx = torch.randint(0, L, (B, Q, S, 3), generator=g)
    qb, kb = query_rpe_bias(q, table, rel_idx), key_rpe_bias(k, table, rel_idx)
    op_table = value_table_to_op_layout(table)
    assert op_table.shape == (3, L, H, D)
    for b in range(B):
        for h in range(H):
            for i in range(Q):
                for j in range(S):
                    cols = [a * L + rel_idx[b, i, j, a].item() for a in range(3)]
                    assert torch.isclose(qb[b, h, i, j], sum(q[b, h, i] @ table[h, :, c] for c in cols))
                    assert torch.isclose(kb[b, h, i, j], sum(k[b, h, j] @ table[h, :, c] for c in cols))
    for a in range(3):
        for l in range(L):
            torch.testing.assert_close(op_table[a, l], table[:, :, a * L + l])


def test_every_parameter_gets_a_finite_gradient():
    head = small_head()
    f, x = scene(15)
    out = head(dict(sp_feats=[f], sp_xyz=[x]))
    total = sum(l['cls_logits'].sum() + l['scores'].sum() + l['centers'].sum() + l['mask_logits'][0].sum()
                for l in out['layers']) + out['queries'].sum()
    total.backward()
    # The first layer's content queries are zero, so its self-attention content weights get none.
    zero_input = {f'layers.0.{n}.weight' for n in ('sa_qcontent_proj', 'sa_kcontent_proj', 'sa_v_proj')}
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert (p.grad.abs().sum() > 0) != (name in zero_input), name


def test_attention_mask_acts_from_the_second_layer():
    """A threshold that blocks part of the superpoints changes layers 2.. but not layer 1;
    a threshold of 1 blocks every superpoint, so every row is unblocked again."""
    f, x = scene(30)
    inputs = dict(sp_feats=[f], sp_xyz=[x])
    outs = {}
    for thr in (0.0, 0.5, 1.0):
        with torch.no_grad():
            outs[thr] = [l['mask_logits'][0] for l in small_head(attn_mask_thr=thr)(inputs)['layers']]
    probs = outs[0.0][0].sigmoid()
    assert 0.05 < (probs < 0.5).float().mean() < 0.95  # the 0.5 threshold blocks part of them
    torch.testing.assert_close(outs[0.5][0], outs[0.0][0])
    assert not torch.allclose(outs[0.5][1], outs[0.0][1])
    for a, b in zip(outs[1.0], outs[0.0]):
        torch.testing.assert_close(a, b)


def test_predict_scene_by_hand():
    head = small_head(num_classes=2, topk=3, score_thr=0.0, min_points=1)
    cls_logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # Q=2, 2 classes + no-object
    scores = torch.tensor([[0.8], [0.5]])
    mask_logits = torch.tensor([[3.0, -1.0, 1.0], [-2.0, -2.0, 0.5]])
    sp_ids = torch.tensor([0, 0, 1, 2, 2, 2])
    result = head._predict_scene(cls_logits, scores, mask_logits, sp_ids)
    prob = cls_logits.softmax(-1)[:, :2] * scores
    pairs = sorted(((prob[q, c].item(), q, c) for q in range(2) for c in range(2)), reverse=True)[:3]
    expected = []
    for s, q, c in pairs:
        on = mask_logits[q] > 0
        s *= (mask_logits[q].sigmoid() * on).sum().item() / (on.sum().item() + 1e-6)
        points = on[sp_ids]
        if s > 0 and points.sum() > 1:
            expected.append((s, c, points.tolist()))
    got = sorted(zip(result.instance_scores.tolist(), result.instance_labels.tolist(),
                     result.pts_instance_mask.tolist()), reverse=True)
    assert len(got) == len(expected) == 3
    for (s, c, m), (es, ec, em) in zip(got, sorted(expected, reverse=True)):
        assert math.isclose(s, es, rel_tol=1e-5) and c == ec and m == em


def test_predict_few_points_gives_nothing():
    head = small_head(min_points=100).eval()
    f, x = scene(3)
    sp_ids = torch.tensor([0, 1, 2, 2, 1])
    with torch.no_grad():
        (result, ) = head.predict(dict(sp_feats=[f], sp_xyz=[x], sp_ids=[sp_ids]), [Det3DDataSample()])
    assert result.pts_instance_mask.shape == (0, 5) and result.pts_instance_mask.dtype == torch.bool
    assert result.instance_labels.shape == (0, ) and result.instance_labels.dtype == torch.long
    assert result.instance_scores.shape == (0, )


def test_bad_inputs_raise_clear_errors():
    head = small_head()
    f, x = scene(5)
    with pytest.raises(ValueError, match='sp_xyz'):
        head(dict(sp_feats=[f], sp_xyz=[x[:4]]))
    with pytest.raises(ValueError, match='S >= 1'):
        head(dict(sp_feats=[f[:0]], sp_xyz=[x[:0]]))
    with pytest.raises(ValueError, match='non-empty'):
        head(dict(sp_feats=[], sp_xyz=[]))
    with pytest.raises(ValueError, match='criterion'):
        head.loss(dict(sp_feats=[f], sp_xyz=[x]), [Det3DDataSample()])
    with pytest.raises(ValueError, match='rpe_num_bins'):
        MODELS.build({**SMALL, 'rpe_num_bins': 7})


def test_padding_beyond_the_batch_changes_nothing():
    """The CUDA graphs pad scenes to a bucket of superpoints: the decoder on extra padding
    (blocked in the attention) gives the unpadded outputs."""
    head = small_head().double().eval()
    feats, xyz = scene(11, dtype=torch.float64)
    plain = head(dict(sp_feats=[feats], sp_xyz=[xyz]))['layers']
    pad = 21
    padded = (torch.cat([feats, torch.randn(pad, 8, dtype=torch.float64)])[None],
              torch.cat([xyz, torch.rand(pad, 3, dtype=torch.float64)])[None],
              (torch.arange(11 + pad) >= 11)[None], xyz.min(0)[0][None, None], xyz.max(0)[0][None, None])
    layers, _ = head._decode(*padded)
    for lp, la in zip(layers, plain):
        for key in ('cls_logits', 'scores', 'centers'):
            torch.testing.assert_close(lp[key], la[key], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(lp['mask_logits'][0, :, :11], la['mask_logits'][0], atol=1e-10, rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('amp', [False, True])
def test_cuda_graph_matches_eager(amp):
    """CUDA graphs of the decoder: one per bucket, outputs as the eager decoder's; a replay's
    outputs are copies that the next replay does not overwrite."""
    head = small_head(cuda_graph=True, graph_bucket=16).cuda().eval()
    scenes = [tuple(t.cuda() for t in scene(n, seed=n)) for n in (20, 27, 40)]  # buckets 32, 32, 48
    with torch.no_grad(), torch.autocast('cuda', enabled=amp):
        graphed = [head(dict(sp_feats=[f], sp_xyz=[x])) for f, x in scenes]
        assert len(head._graphs) == 2
        head.cuda_graph = False
        eager = [head(dict(sp_feats=[f], sp_xyz=[x])) for f, x in scenes]
    if not amp:
        for g, e in zip(graphed, eager):
            for out_g, out_e in zip(outputs(g), outputs(e)):
                torch.testing.assert_close(out_g, out_e, atol=1e-5, rtol=1e-5)
        return
    # float16: the graphs pad the superpoints to the bucket, which changes the products' shapes
    # and so their rounding; the graphed outputs must be as close to float32 as eager ones.
    with torch.no_grad():
        exact = [head(dict(sp_feats=[f], sp_xyz=[x])) for f, x in scenes]
    for g, e, x in zip(graphed, eager, exact):
        for out_g, out_e, out_x in zip(outputs(g), outputs(e), outputs(x)):
            err_g, err_e = ((out.float() - out_x).norm() / out_x.norm() for out in (out_g, out_e))
            assert err_g <= 2 * err_e + 1e-4 and err_g < 1e-2, (err_g, err_e)


def outputs(result):
    """The head's output tensors, in a fixed order."""
    return [t for layer in result['layers'] for t in layer.values()] + [result['queries']]
