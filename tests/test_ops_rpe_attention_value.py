"""ikne_plugin.ops.rpe_attention_value: extension vs scatter reference vs a naive gather."""
import importlib

import pytest
import torch

from ikne_plugin.ops import ext_loader, range_flags
from ikne_plugin.ops.rpe_attention_value import rpe_attention_value, rpe_attention_value_reference

# the module, not the function of the same name that ikne_plugin.ops exports
rpe_module = importlib.import_module('ikne_plugin.ops.rpe_attention_value')
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def random_rpe(batch, heads, queries, keys, bins, dim, dtype=torch.float64, index_dtype=torch.int64,
               seed=0):
    g = torch.Generator().manual_seed(seed)
    attn = torch.rand(batch, heads, queries, keys, generator=g, dtype=torch.float64).softmax(-1)
    rel_idx = torch.randint(0, bins, (batch, queries, keys, 3), generator=g).to(index_dtype)
    table = torch.randn(3, bins, heads, dim, generator=g, dtype=torch.float64)
    return attn.to(dtype), rel_idx, table.to(dtype)


def naive_rpe(attn, rel_idx, table):
    """The definition, gathered: sum_j attn[b,h,i,j] * sum_a table[a, rel_idx[b,i,j,a], h]."""
    axes = torch.arange(3).view(3, 1, 1, 1)
    values = table[axes, rel_idx.long().permute(3, 0, 1, 2)].sum(0)  # [B, Nq, Ns, H, D]
    return torch.einsum('bhij,bijhd->bhid', attn, values)


def forward_backward(op, attn, rel_idx, table, grad_out):
    attn = attn.detach().requires_grad_(True)
    table = table.detach().requires_grad_(True)
    out = op(attn, rel_idx, table)
    return (out, *torch.autograd.grad(out, (attn, table), grad_out))


def test_reference_matches_naive_gather():
    attn, rel_idx, table = random_rpe(2, 3, 5, 40, 7, 4, seed=1)
    grad_out = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    for got, want in zip(forward_backward(rpe_attention_value_reference, attn, rel_idx, table, grad_out),
                         forward_backward(naive_rpe, attn, rel_idx, table, grad_out)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
@pytest.mark.parametrize('bins', [1, 48, 300])
def test_extension_matches_reference(dtype, index_dtype, bins):
    attn, rel_idx, table = random_rpe(2, 4, 30, 200, bins, 16, dtype, index_dtype, seed=bins)
    grad_out = torch.randn(2, 4, 30, 16, dtype=dtype)
    got = forward_backward(rpe_attention_value, attn, rel_idx, table, grad_out)
    want = forward_backward(rpe_attention_value_reference, attn, rel_idx, table, grad_out)
    assert got[0].dtype == dtype and got[0].shape == (2, 4, 30, 16)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize('op', [rpe_attention_value, rpe_attention_value_reference])
def test_gradcheck(op):
    attn, rel_idx, table = random_rpe(2, 2, 3, 9, 5, 3, seed=2)
    attn.requires_grad_(True)
    table.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, t: op(a, rel_idx, t), (attn, table))


def test_non_contiguous_inputs():
    attn, rel_idx, table = random_rpe(1, 3, 20, 10, 6, 4, seed=3)
    attn_t = attn.transpose(2, 3).contiguous().transpose(2, 3)
    rel_t = rel_idx.transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(rpe_attention_value(attn_t, rel_t, table[:, :, :, :]),
                               naive_rpe(attn, rel_idx, table))


def test_empty_inputs():
    attn, rel_idx, table = random_rpe(1, 2, 4, 0, 5, 3, seed=4)
    out, grad_attn, grad_table = forward_backward(rpe_attention_value, attn, rel_idx, table,
                                                  torch.ones(1, 2, 4, 3, dtype=torch.float64))
    assert out.shape == (1, 2, 4, 3) and torch.all(out == 0)
    assert grad_attn.shape == (1, 2, 4, 0) and torch.all(grad_table == 0)
    attn, rel_idx, table = random_rpe(1, 2, 0, 6, 5, 3, seed=5)
    assert rpe_attention_value(attn, rel_idx, table).shape == (1, 2, 0, 3)


def bad(attn=None, rel_idx=None, table=None):
    good = random_rpe(1, 2, 3, 4, 5, 6, dtype=torch.float32)
    return tuple(new if new is not None else old for new, old in zip((attn, rel_idx, table), good))


@pytest.mark.parametrize('args, error, match', [
    (bad(rel_idx=torch.full((1, 3, 4, 3), 5)), ValueError, r'rel_idx must lie in \[0, 5\)'),
    (bad(rel_idx=torch.full((1, 3, 4, 3), -1)), ValueError, r'rel_idx must lie in \[0, 5\)'),
    (bad(rel_idx=torch.zeros(1, 3, 4, 3)), TypeError, 'rel_idx must be int32 or int64'),
    (bad(rel_idx=torch.zeros(1, 3, 5, 3, dtype=torch.long)), ValueError, r'rel_idx must be \[B, Nq, Ns, 3\]'),
    (bad(attn=torch.rand(1, 2, 3, 4, dtype=torch.float16)), TypeError, 'attn must be float32 or float64'),
    (bad(attn=torch.rand(2, 3, 4)), ValueError, r'attn must be \[B, H, Nq, Ns\]'),
    (bad(table=torch.rand(3, 5, 2, 6, dtype=torch.float64)), TypeError, 'table must be float32'),
    (bad(table=torch.rand(3, 5, 3, 6)), ValueError, 'with H = 2'),
    (bad(table=torch.rand(2, 5, 2, 6)), ValueError, r'table must be \[3, L, H, D\]'),
])
def test_bad_input_raises(args, error, match):
    with pytest.raises(error, match=match):
        rpe_attention_value(*args)


def test_extension_flags_range_instead_of_raising():
    """The compiled op never raises on data: it sets a flag that the wrapper turns into the error."""
    attn, rel_idx, table = random_rpe(1, 2, 3, 4, 5, 6)
    forward = ext_loader.load_ext().rpe_attention_value_forward
    for rel, flagged in ((rel_idx, 0), (rel_idx + 5, 1), (rel_idx - 5, 1)):
        flag = torch.zeros(1, dtype=torch.int32)
        out, hist = forward(attn, rel, table, False, flag)
        assert hist is None and flag.item() == flagged
    out, hist = forward(attn, rel_idx, table, True, torch.zeros(1, dtype=torch.int32))
    assert hist.shape == (1, 2, 3, 15) and torch.allclose(hist.sum(-1), 3 * attn.sum(-1))


def check_gradient_of_one_input(attn, rel_idx, table, grad_out, attn_grad, table_grad):
    """The op computes only the requested gradient, and it equals the reference's."""
    grads = []
    for op in (rpe_attention_value, rpe_attention_value_reference):
        a, t = attn.clone().requires_grad_(attn_grad), table.clone().requires_grad_(table_grad)
        op(a, rel_idx, t).backward(grad_out)
        grads.append(a.grad if attn_grad else t.grad)
        assert (a.grad is None) != attn_grad and (t.grad is None) != table_grad
    torch.testing.assert_close(*grads)


@pytest.mark.parametrize('attn_grad, table_grad', [(True, False), (False, True)])
def test_gradient_of_one_input(attn_grad, table_grad):
    """Only the needed gradient is computed (the histogram is saved only for the table's)."""
    attn, rel_idx, table = random_rpe(2, 3, 7, 50, 9, 5, seed=11)
    grad_out = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    check_gradient_of_one_input(attn, rel_idx, table, grad_out, attn_grad, table_grad)


def test_gradient_asked_for_one_of_two_inputs():
    """Both inputs require grad and torch.autograd.grad asks for one: that one is the reference's."""
    attn, rel_idx, table = random_rpe(2, 3, 7, 50, 9, 5, seed=12)
    grad_out = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    for wrt in (0, 1):
        grads = []
        for op in (rpe_attention_value, rpe_attention_value_reference):
            inputs = attn.clone().requires_grad_(True), table.clone().requires_grad_(True)
            grads += torch.autograd.grad(op(inputs[0], rel_idx, inputs[1]), inputs[wrt], grad_out)
        torch.testing.assert_close(*grads)


def test_reference_fallback(monkeypatch):
    monkeypatch.setattr(rpe_module, 'ext_available', lambda: False)
    attn, rel_idx, table = random_rpe(1, 2, 3, 4, 5, 6, seed=10)
    torch.testing.assert_close(rpe_attention_value(attn, rel_idx, table), naive_rpe(attn, rel_idx, table))
    with pytest.raises(ValueError, match=r'rel_idx must lie in \[0, 5\)'):
        rpe_attention_value(attn, rel_idx + 5, table)


@cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
@pytest.mark.parametrize('bins', [48, 5000])  # 5000 bins x 8 heads do not fit in shared memory
@pytest.mark.parametrize('dim', [32, 40])  # 40: the backward kernels' lanes over D take two passes
def test_cuda_matches_cpu_and_reference(dtype, index_dtype, bins, dim):
    # 80 query rows of 700 superpoints: three tiles a row, the last one partial
    attn, rel_idx, table = random_rpe(2, 8, 40, 700, bins, dim, dtype, index_dtype, seed=6)
    grad_out = torch.randn(2, 8, 40, dim, dtype=dtype)
    exact = forward_backward(rpe_attention_value, attn.double(), rel_idx, table.double(), grad_out.double())
    args = [t.cuda() for t in (attn, rel_idx, table, grad_out)]
    with torch.no_grad():  # the inference path, which keeps no histogram
        inference = rpe_attention_value(*args[:3])
    for results in (forward_backward(rpe_attention_value, *args),
                    forward_backward(rpe_attention_value_reference, *args)):
        assert all(r.is_cuda and r.dtype == dtype for r in results)
        for got, want in zip((*results, inference), (*exact, exact[0])):
            assert_close_to_exact(got.cpu(), want)


def assert_close_to_exact(got, exact):
    """float64 results to float64 precision; float32 ones to the rounding of their sums, which
    each device and path adds in its own order (a 40-term dot product's rounding reached
    1.3e-5 on an H100): relative 1e-5 of the tensor's largest value."""
    if got.dtype == torch.float64:
        torch.testing.assert_close(got, exact)
    else:
        torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-5 * exact.abs().max().item())


@cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_half_types(dtype):
    attn, rel_idx, table = random_rpe(1, 8, 50, 2000, 48, 32, torch.float64, seed=7)
    grad_out = torch.randn(1, 8, 50, 32, dtype=torch.float64)
    exact = forward_backward(rpe_attention_value_reference, attn, rel_idx, table, grad_out)
    half = forward_backward(rpe_attention_value, attn.cuda().to(dtype), rel_idx.cuda(),
                            table.cuda().to(dtype), grad_out.cuda().to(dtype))
    with torch.no_grad():
        inference = rpe_attention_value(attn.cuda().to(dtype), rel_idx.cuda(), table.cuda().to(dtype))
    for got, want in zip((*half, inference), (*exact, exact[0])):
        assert got.dtype == dtype
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double().cpu() / scale, want / scale, atol=2e-2, rtol=0)


@cuda
def test_cuda_gradcheck_and_empty():
    attn, rel_idx, table = random_rpe(2, 2, 3, 9, 5, 3, seed=8)
    attn, rel_idx, table = attn.cuda().requires_grad_(True), rel_idx.cuda(), table.cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, t: rpe_attention_value(a, rel_idx, t), (attn, table))
    attn, rel_idx, table = (t.cuda() for t in random_rpe(1, 2, 4, 0, 5, 3, seed=9))
    assert torch.all(rpe_attention_value(attn, rel_idx, table) == 0)
    with pytest.raises(ValueError, match='one device'):
        rpe_attention_value(attn, rel_idx.cpu(), table)


@cuda
def test_cuda_table_gradient_deterministic_on_request():
    """torch.use_deterministic_algorithms: the table's gradient sums all query rows in one
    span, without atomics (400 rows: 8 spans otherwise), so that repeated calls agree bit for bit."""
    attn, rel_idx, table = (t.cuda() for t in random_rpe(1, 8, 400, 300, 48, 32, torch.float32, seed=14))
    grad_out = torch.randn(1, 8, 400, 32, device='cuda')
    spanned = forward_backward(rpe_attention_value, attn, rel_idx, table, grad_out)[2]
    was_on = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        first, second = (forward_backward(rpe_attention_value, attn, rel_idx, table, grad_out)[2]
                         for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(was_on)
    assert torch.equal(first, second)
    assert_close_to_exact(first.cpu(), spanned.double().cpu())


@cuda
@pytest.mark.parametrize('attn_grad, table_grad', [(True, False), (False, True)])
def test_cuda_gradient_of_one_input(attn_grad, table_grad):
    attn, rel_idx, table = (t.cuda() for t in random_rpe(2, 8, 30, 500, 48, 32, torch.float32, seed=12))
    grad_out = torch.randn(2, 8, 30, 32, device='cuda')
    check_gradient_of_one_input(attn, rel_idx, table, grad_out, attn_grad, table_grad)


@cuda
def test_cuda_bad_input_raises(monkeypatch):
    """Out-of-range bins raise: after the call by default (with a gradient, the queued backward
    skips them), at the call with IKNE_SYNC_RANGE_CHECKS=1."""
    attn, rel_idx, table = (t.cuda() for t in random_rpe(2, 4, 30, 300, 7, 8, torch.float32, seed=13))
    attn.requires_grad_(True)
    for bad_index in (7, -1):
        bad = rel_idx.clone()
        bad[1, 17, 123, 2] = bad_index
        rpe_attention_value(attn, bad, table).sum().backward()
        with pytest.raises(ValueError, match=r'rpe_attention_value: rel_idx has values outside \[0, L\)'):
            range_flags.raise_flagged(wait=True)
        monkeypatch.setenv(range_flags.SYNC_ENV, '1')
        with pytest.raises(ValueError, match=r'rel_idx must lie in \[0, 7\)'):
            rpe_attention_value(attn, bad, table)
        monkeypatch.delenv(range_flags.SYNC_ENV)
    flag = torch.zeros(1, dtype=torch.int32, pin_memory=True)
    ext_loader.load_ext().rpe_attention_value_forward(attn, bad, table, True, flag)
    torch.cuda.synchronize()
    assert flag.item() == 1  # set by the kernel in host memory
