"""ikne_plugin.ops.ball_query: extension vs reference (exact), the definition, fill rule, errors."""
import pytest
import torch

from ikne_plugin.ops import ball_query, ball_query_reference, ext_loader

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def brute_force(center, xyz, radius, k):
    """The definition, one scene, in Python."""
    rows = []
    for c in center.tolist():
        d = [[p[a] - c[a] for a in range(3)] for p in xyz.tolist()]
        found = [j for j, e in enumerate(d) if e[0] * e[0] + e[1] * e[1] + e[2] * e[2] < radius * radius][:k]
        rows.append(found + [found[0] if found else -1] * (k - len(found)))
    return rows


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_matches_reference(dtype):
    g = torch.Generator().manual_seed(0)
    xyz = (torch.rand(2, 3000, 3, generator=g) * 2).to(dtype)
    center = torch.cat([xyz[:, :200], (torch.rand(2, 50, 3, generator=g) * 4 - 1).to(dtype)], 1)
    idx = ball_query(center, xyz, 0.15, 16)
    assert idx.dtype == torch.int64 and idx.shape == (2, 250, 16)
    assert torch.equal(idx, ball_query_reference(center, xyz, 0.15, 16))
    assert (idx[:, :200] >= 0).all() and (idx == -1).any()  # the case has empty balls too
    counts = torch.tensor([[len(set(r)) for r in b] for b in idx.tolist()])
    assert (counts[:, :200] > 1).any() and (counts[:, :200] < 16).any()  # full and partial balls


def test_matches_the_definition():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(1, 300, 3, generator=g, dtype=torch.float64)
    center = torch.rand(1, 40, 3, generator=g, dtype=torch.float64) * 1.4 - 0.2
    assert ball_query(center, xyz, 0.2, 8)[0].tolist() == brute_force(center[0], xyz[0], 0.2, 8)


def test_radius_is_exclusive_and_more_slots_than_points():
    xyz = torch.tensor([[[0., 0, 0], [1, 0, 0], [0.5, 0, 0]]], dtype=torch.float64)
    center = torch.tensor([[[0., 0, 0], [5, 5, 5]]], dtype=torch.float64)
    expected = [[[0, 2, 0, 0, 0], [-1, -1, -1, -1, -1]]]  # distance exactly 1 is outside
    assert ball_query(center, xyz, 1.0, 5).tolist() == expected
    assert ball_query_reference(center, xyz, 1.0, 5).tolist() == expected


def test_bad_input():
    xyz = torch.rand(1, 10, 3)
    with pytest.raises(ValueError, match='share dtype and batch size'):
        ball_query(xyz.double(), xyz, 0.1, 4)
    with pytest.raises(ValueError, match='share dtype and batch size'):
        ball_query(torch.rand(2, 10, 3), xyz, 0.1, 4)
    with pytest.raises(ValueError, match='radius must be a positive number'):
        ball_query(xyz, xyz, 0.0, 4)
    with pytest.raises(ValueError, match='num_neighbors must be >= 1'):
        ball_query(xyz, xyz, 0.1, 0)
    with pytest.raises(ValueError, match=r'\[B, N, 3\]'):
        ball_query(xyz[0], xyz, 0.1, 4)


@cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    g = torch.Generator().manual_seed(2)
    xyz = (torch.rand(2, 20000, 3, generator=g) * 4).to(dtype)
    center = torch.cat([xyz[:, :1000], (torch.rand(2, 100, 3, generator=g) * 6 - 1).to(dtype)], 1)
    idx = ball_query(center.cuda(), xyz.cuda(), 0.1, 32)
    assert idx.is_cuda
    assert torch.equal(idx.cpu(), ball_query(center, xyz, 0.1, 32))
    assert torch.equal(idx, ball_query_reference(center.cuda(), xyz.cuda(), 0.1, 32))
