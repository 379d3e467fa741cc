"""ikne_plugin.ops.rpe_attention_bias: extension vs the per-axis gather reference, gradients."""
import pytest
import torch

from ikne_plugin.ops import ext_loader, range_flags
from ikne_plugin.ops.rpe_attention_bias import rpe_attention_bias, rpe_attention_bias_reference

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def random_bias(batch, heads, rows, cols, bins, dtype=torch.float64, index_dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, heads, rows, 3 * bins, generator=g, dtype=torch.float64).to(dtype)
    rel_idx = torch.randint(0, bins, (batch, rows, cols, 3), generator=g).to(index_dtype)
    return values, rel_idx


def test_reference_matches_the_definition():
    values, rel_idx = random_bias(2, 3, 4, 5, 6)
    out = rpe_attention_bias_reference(values, rel_idx)
    for b, h, i, j in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 1)]:
        expected = sum(values[b, h, i, a * 6 + rel_idx[b, i, j, a]] for a in range(3))
        torch.testing.assert_close(out[b, h, i, j], expected)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
@pytest.mark.parametrize('bins', [1, 48, 300])
def test_extension_matches_reference(dtype, index_dtype, bins):
    values, rel_idx = random_bias(2, 8, 17, 40, bins, dtype, index_dtype, seed=bins)
    torch.testing.assert_close(rpe_attention_bias(values, rel_idx), rpe_attention_bias_reference(values, rel_idx))


@pytest.mark.parametrize('op', [rpe_attention_bias, rpe_attention_bias_reference])
def test_gradcheck(op):
    values, rel_idx = random_bias(2, 2, 3, 7, 4, seed=1)
    assert torch.autograd.gradcheck(lambda v: op(v, rel_idx), (values.requires_grad_(True),))


def test_gradient_matches_reference_and_transposed_use():
    """The key bias uses the op on rel_idx transposed (non-contiguous): same values and gradients."""
    values, rel_idx = random_bias(2, 4, 9, 13, 5, seed=2)
    keys = torch.randn(2, 4, 13, 15, dtype=torch.float64)
    grads = []
    for op in (rpe_attention_bias, rpe_attention_bias_reference):
        leaf = keys.clone().requires_grad_(True)
        out = op(leaf, rel_idx.transpose(1, 2)).transpose(2, 3)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape))
        grads.append((out.detach(), leaf.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_empty_inputs():
    values, rel_idx = random_bias(1, 2, 3, 0, 4)
    assert rpe_attention_bias(values, rel_idx).shape == (1, 2, 3, 0)


@pytest.mark.parametrize('bins, rel_idx, error, match', [
    (torch.zeros(1, 2, 3, 12, dtype=torch.float16), torch.zeros(1, 3, 4, 3, dtype=torch.long), TypeError,
     'bins must be float32 or float64'),
    (torch.zeros(1, 2, 3, 11), torch.zeros(1, 3, 4, 3, dtype=torch.long), ValueError, r'3 axes of L bins'),
    (torch.zeros(1, 2, 3, 12), torch.zeros(1, 4, 4, 3, dtype=torch.long), ValueError, r'rel_idx must be \[B, N, M, 3\]'),
    (torch.zeros(1, 2, 3, 12), torch.zeros(1, 3, 4, 3), TypeError, 'rel_idx must be int32 or int64'),
    (torch.zeros(1, 2, 3, 12), torch.full((1, 3, 4, 3), 4), ValueError, r'rel_idx must lie in \[0, 4\)'),
])
def test_bad_input_raises(bins, rel_idx, error, match):
    with pytest.raises(error, match=match):
        rpe_attention_bias(bins, rel_idx)


@cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('bins', [48, 5000])  # 5000 bins x 8 heads do not fit in shared memory
def test_cuda_matches_cpu_and_reference(dtype, bins):
    values, rel_idx = random_bias(2, 8, 30, 700, bins, dtype, seed=3)
    grad = torch.randn(2, 8, 30, 700, dtype=dtype)
    outs = []
    for device in ('cpu', 'cuda'):
        for op in (rpe_attention_bias, rpe_attention_bias_reference):
            leaf = values.detach().to(device).requires_grad_(True)
            out = op(leaf, rel_idx.to(device))
            out.backward(grad.to(device))
            outs.append((out.detach().cpu(), leaf.grad.cpu()))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            torch.testing.assert_close(a, b)


@cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_half_types(dtype):
    values, rel_idx = random_bias(1, 8, 20, 300, 48, seed=4)
    leaf = values.cuda().to(dtype).requires_grad_(True)
    out = rpe_attention_bias(leaf, rel_idx.cuda())
    out.float().sum().backward()
    ref_leaf = leaf.detach().double().requires_grad_(True)
    ref = rpe_attention_bias_reference(ref_leaf, rel_idx.cuda())
    ref.sum().backward()
    assert out.dtype == dtype and leaf.grad.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=3e-2, rtol=1e-2)
    torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, atol=3e-2, rtol=1e-2)


@cuda
def test_cuda_bad_index_raises(monkeypatch):
    values, rel_idx = random_bias(1, 4, 10, 50, 7, torch.float32, seed=5)
    values, bad = values.cuda(), rel_idx.cuda()
    bad[0, 3, 17, 1] = 7
    rpe_attention_bias(values, bad)
    with pytest.raises(ValueError, match=r'rpe_attention_bias: rel_idx has values outside \[0, L\)'):
        range_flags.raise_flagged(wait=True)
    monkeypatch.setenv(range_flags.SYNC_ENV, '1')
    with pytest.raises(ValueError, match=r'rel_idx must lie in \[0, 7\)'):
        rpe_attention_bias(values, bad)
