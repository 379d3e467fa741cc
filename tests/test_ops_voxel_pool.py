"""ikne_plugin.ops.voxel_pool: extension vs reference vs a per-voxel loop, gradients, errors."""
import importlib

import pytest
import torch

from ikne_plugin.ops import ext_loader, range_flags
from ikne_plugin.ops.voxel_pool import voxel_pool, voxel_pool_reference

# the module, not the function of the same name that ikne_plugin.ops exports
voxel_pool_module = importlib.import_module('ikne_plugin.ops.voxel_pool')
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
MODES = ('mean', 'max')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def random_pooling(n, channels, num_voxels, dtype=torch.float64, seed=0):
    """Features and a p2v that leaves some voxels empty."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, channels, generator=g, dtype=dtype)
    p2v = torch.randint(0, max(num_voxels - 2, 1), (n,), generator=g)
    return feats, p2v


def loop_pool(feats, p2v, num_voxels, mode):
    """Oracle for the reference: one voxel at a time; max keeps the first maximum."""
    out = torch.zeros(num_voxels, feats.shape[1], dtype=feats.dtype)
    argmax = torch.full((num_voxels, feats.shape[1]), -1)
    for v in range(num_voxels):
        points = (p2v == v).nonzero().flatten()
        if len(points) == 0:
            continue
        if mode == 'mean':
            out[v] = feats[points].mean(0)
        else:
            for c in range(feats.shape[1]):
                best = max(points.tolist(), key=lambda i: (feats[i, c].item(), -i))
                out[v, c], argmax[v, c] = feats[best, c], best
    return out, argmax


@pytest.mark.parametrize('mode', MODES)
def test_reference_matches_loop(mode):
    feats, p2v = random_pooling(200, 3, 40, seed=1)
    feats[5] = feats[4]  # ties inside a voxel
    p2v[5] = p2v[4]
    want, _ = loop_pool(feats, p2v, 40, mode)
    torch.testing.assert_close(voxel_pool_reference(feats, p2v, 40, mode), want)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_extension_matches_reference(mode, dtype):
    feats, p2v = random_pooling(20_000, 32, 3000, dtype=dtype, seed=2)
    feats.requires_grad_(True)
    got = voxel_pool(feats, p2v, 3000, mode)
    want = voxel_pool_reference(feats, p2v, 3000, mode)
    assert got.dtype == dtype and got.shape == (3000, 32)
    assert torch.all(got[-2:] == 0)  # empty voxels
    torch.testing.assert_close(got, want)
    grad_out = torch.randn(want.shape, generator=torch.Generator().manual_seed(9), dtype=dtype)
    (grad_got,) = torch.autograd.grad(got, feats, grad_out)
    (grad_want,) = torch.autograd.grad(want, feats, grad_out)
    torch.testing.assert_close(grad_got, grad_want)


@pytest.mark.parametrize('pool', [voxel_pool, voxel_pool_reference])
@pytest.mark.parametrize('mode', MODES)
def test_gradcheck(pool, mode):
    feats, p2v = random_pooling(30, 4, 12, seed=3)
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: pool(f, p2v, 12, mode), (feats,))


@pytest.mark.parametrize('pool', [voxel_pool, voxel_pool_reference])
def test_max_ties_send_gradient_to_smallest_index(pool):
    feats = torch.tensor([[1.0, 5.0], [3.0, 5.0], [3.0, 2.0], [7.0, 7.0]], requires_grad=True)
    p2v = torch.tensor([0, 0, 0, 1])
    out = pool(feats, p2v, 3, 'max')
    assert out.tolist() == [[3.0, 5.0], [7.0, 7.0], [0.0, 0.0]]
    out.backward(torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]))
    assert feats.grad.tolist() == [[0.0, 20.0], [10.0, 0.0], [0.0, 0.0], [30.0, 40.0]]


def test_mean_gradient_is_divided_by_count():
    feats = torch.randn(5, 2, requires_grad=True)
    voxel_pool(feats, torch.tensor([1, 1, 1, 0, 1]), 2, 'mean').sum().backward()
    torch.testing.assert_close(feats.grad, torch.tensor([[0.25] * 2] * 3 + [[1.0] * 2] + [[0.25] * 2]))


@pytest.mark.parametrize('mode', MODES)
def test_empty_inputs_and_int32_index(mode):
    feats = torch.zeros(0, 3, requires_grad=True)
    out = voxel_pool(feats, torch.zeros(0, dtype=torch.long), 4, mode)
    assert out.shape == (4, 3) and torch.all(out == 0)
    out.sum().backward()
    assert feats.grad.shape == (0, 3)
    assert voxel_pool(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0, mode).shape == (0, 3)
    feats, p2v = random_pooling(50, 3, 10, seed=4)
    torch.testing.assert_close(voxel_pool(feats, p2v.int(), 10, mode), voxel_pool(feats, p2v, 10, mode))


@pytest.mark.parametrize('args, error, match', [
    ((torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 1), TypeError, 'feats must be float32'),
    ((torch.zeros(3), torch.zeros(3, dtype=torch.long), 1), ValueError, r'\[N, C\]'),
    ((torch.zeros(3, 2), torch.zeros(3), 1), TypeError, 'p2v must be int64 or int32'),
    ((torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 1), ValueError, 'one entry per point'),
    ((torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2), ValueError, r'p2v must lie in \[0, 2\)'),
    ((torch.zeros(3, 2), torch.tensor([0, -1, 0]), 2), ValueError, r'p2v must lie in \[0, 2\)'),
    ((torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), -1), ValueError, 'num_voxels must be >= 0'),
    ((torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2.0), TypeError, 'num_voxels must be an int'),
])
def test_bad_input_raises(args, error, match):
    with pytest.raises(error, match=match):
        voxel_pool(*args)


def test_reference_fallback(monkeypatch):
    monkeypatch.setattr(voxel_pool_module, 'load_ext', lambda: None)
    feats, p2v = random_pooling(40, 3, 9, seed=8)
    for mode in MODES:
        torch.testing.assert_close(voxel_pool(feats, p2v, 9, mode), loop_pool(feats, p2v, 9, mode)[0])
    with pytest.raises(ValueError, match=r'p2v must lie in \[0, 2\)'):
        voxel_pool(feats, p2v, 2)


@pytest.mark.parametrize('use_max', [False, True])
def test_extension_flags_range_instead_of_raising(use_max):
    """The compiled op never raises on data: it sets a flag that the wrapper turns into the error."""
    feats, p2v = random_pooling(40, 3, 9, seed=10)
    forward = ext_loader.load_ext().voxel_pool_forward
    for index, flagged in ((p2v, 0), (p2v + 9, 1), (p2v - 9, 1)):
        flag = torch.zeros(1, dtype=torch.int32)
        forward(feats, index, 9, use_max, flag)
        assert flag.item() == flagged


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="'mean' or 'max'"):
        voxel_pool(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 1, 'sum')


@cuda
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_cuda_matches_cpu_and_reference(mode, dtype):
    feats, p2v = random_pooling(150_000, 32, 20_000, dtype=dtype, seed=5)
    feats[1::7] = feats[::7][:feats[1::7].shape[0]]  # plenty of exact ties
    grad_out = torch.randn(20_000, 32, dtype=dtype, generator=torch.Generator().manual_seed(6))
    results = []
    for device in ('cpu', 'cuda'):
        f = feats.to(device).requires_grad_(True)
        out = voxel_pool(f, p2v.to(device), 20_000, mode)
        (grad,) = torch.autograd.grad(out, f, grad_out.to(device))
        results.append((out.cpu(), grad.cpu()))
    f = feats.cuda().requires_grad_(True)
    ref = voxel_pool_reference(f, p2v.cuda(), 20_000, mode)
    (ref_grad,) = torch.autograd.grad(ref, f, grad_out.cuda())
    for out, grad in results[1:] + [(ref.cpu(), ref_grad.cpu())]:
        torch.testing.assert_close(out, results[0][0])
        torch.testing.assert_close(grad, results[0][1])


@cuda
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('layout', ['5 channels', 'misaligned rows'])
def test_cuda_unvectorised_layouts(mode, layout):
    """Rows that the 16-byte mean kernel cannot take (C % 4 != 0, or a start off 16 bytes)."""
    channels = 5 if layout == '5 channels' else 8
    feats, p2v = random_pooling(5000, channels, 700, dtype=torch.float32, seed=11)
    feats_cuda = feats.cuda()
    if layout == 'misaligned rows':  # contiguous, but starting one float into its storage
        feats_cuda = torch.cat([feats_cuda.new_zeros(1), feats_cuda.flatten()])[1:].view(5000, channels)
    assert feats_cuda.is_contiguous() and (feats_cuda.data_ptr() % 16 != 0) == (layout == 'misaligned rows')
    f = feats_cuda.requires_grad_(True)
    out = voxel_pool(f, p2v.cuda(), 700, mode)
    grad_out = torch.randn(700, channels, generator=torch.Generator().manual_seed(12))
    out.backward(grad_out.cuda())
    f_ref = feats.clone().requires_grad_(True)
    ref = voxel_pool_reference(f_ref, p2v, 700, mode)
    ref.backward(grad_out)
    torch.testing.assert_close(out.cpu(), ref.detach())
    torch.testing.assert_close(f.grad.cpu(), f_ref.grad)


@cuda
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_cuda_bad_index_raises(mode, dtype, monkeypatch):
    """Out-of-range voxels raise: after the call by default (the queued backward gives their
    points no gradient), at the call with IKNE_SYNC_RANGE_CHECKS=1."""
    feats, p2v = random_pooling(3000, 8, 100, dtype=dtype, seed=13)
    feats, p2v = feats.cuda().requires_grad_(True), p2v.cuda()
    for bad_index in (100, -1):
        bad = p2v.clone()
        bad[1234] = bad_index
        voxel_pool(feats, bad, 100, mode).sum().backward()
        assert torch.all(feats.grad[1234] == 0)
        feats.grad = None
        with pytest.raises(ValueError, match=r'voxel_pool: p2v has values outside \[0, num_voxels\)'):
            range_flags.raise_flagged(wait=True)
        monkeypatch.setenv(range_flags.SYNC_ENV, '1')
        with pytest.raises(ValueError, match=r'p2v must lie in \[0, 100\)'):
            voxel_pool(feats, bad, 100, mode)
        monkeypatch.delenv(range_flags.SYNC_ENV)
    flag = torch.zeros(1, dtype=torch.int32, pin_memory=True)
    ext_loader.load_ext().voxel_pool_forward(feats, bad, 100, mode == 'max', flag)
    torch.cuda.synchronize()
    assert flag.item() == 1  # set by the kernel in host memory
    torch.testing.assert_close(voxel_pool(feats, p2v, 100, mode).cpu(),
                               voxel_pool_reference(feats.cpu(), p2v.cpu(), 100, mode))


@cuda
@pytest.mark.parametrize('mode', MODES)
def test_cuda_gradcheck_and_empty(mode):
    feats, p2v = random_pooling(30, 4, 12, seed=7)
    feats = feats.cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: voxel_pool(f, p2v.cuda(), 12, mode), (feats,))
    out = voxel_pool(torch.zeros(0, 3, device='cuda'), torch.zeros(0, dtype=torch.long, device='cuda'), 4, mode)
    assert out.shape == (4, 3) and torch.all(out == 0)
    with pytest.raises(ValueError, match='one device'):
        voxel_pool(torch.zeros(3, 2, device='cuda'), torch.zeros(3, dtype=torch.long), 1, mode)
