"""ikne_plugin.ops.furthest_point_sample: extension vs reference (exact), the definition, errors."""
import pytest
import torch

from ikne_plugin.ops import ext_loader, furthest_point_sample, furthest_point_sample_reference

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def brute_force_fps(xyz, num):
    """The definition, one scene, in Python floats of the same rounding (float64)."""
    pts = xyz.tolist()
    chosen, dist = [0], [float('inf')] * len(pts)
    for _ in range(1, num):
        last = pts[chosen[-1]]
        for j, p in enumerate(pts):
            d = [p[a] - last[a] for a in range(3)]
            dist[j] = min(dist[j], d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
        chosen.append(max(range(len(pts)), key=lambda j: (dist[j], -j)))  # first maximum
    return chosen


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_matches_reference(dtype):
    g = torch.Generator().manual_seed(0)
    xyz = (torch.rand(3, 4000, 3, generator=g) * 5).to(dtype)
    idx = furthest_point_sample(xyz, 300)
    assert idx.dtype == torch.int64 and idx.shape == (3, 300)
    assert torch.equal(idx, furthest_point_sample_reference(xyz, 300))
    assert all(len(set(row)) == 300 for row in idx.tolist())  # distinct points are never re-picked


def test_matches_the_definition_and_spreads_out():
    g = torch.Generator().manual_seed(1)
    xyz = torch.rand(1, 200, 3, generator=g, dtype=torch.float64)
    idx = furthest_point_sample(xyz, 20)
    assert idx[0].tolist() == brute_force_fps(xyz[0], 20)
    # two far clusters: the second sample is in the other cluster
    two = torch.cat([torch.rand(1, 50, 3, generator=g), torch.rand(1, 50, 3, generator=g) + 10], 1)
    assert furthest_point_sample(two, 2)[0, 1] >= 50


def test_ties_and_duplicates():
    """Ties go to the smallest index; once every distance is 0 the sampler repeats point 0."""
    xyz = torch.tensor([[[0., 0, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 0]]])
    assert furthest_point_sample(xyz, 4).tolist() == [[0, 1, 2, 0]]
    assert furthest_point_sample_reference(xyz, 4).tolist() == [[0, 1, 2, 0]]


def test_zero_samples_and_non_contiguous_input():
    xyz = torch.rand(2, 3, 10).transpose(1, 2)
    assert furthest_point_sample(xyz, 0).shape == (2, 0)
    assert torch.equal(furthest_point_sample(xyz, 5), furthest_point_sample_reference(xyz, 5))


def test_bad_input():
    with pytest.raises(ValueError, match=r'\[B, N, 3\]'):
        furthest_point_sample(torch.rand(10, 3), 2)
    with pytest.raises(ValueError, match=r'\[B, N, 3\]'):
        furthest_point_sample(torch.rand(1, 10, 2), 2)
    with pytest.raises(TypeError, match='float32 or float64'):
        furthest_point_sample(torch.zeros(1, 10, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r'num must lie in \[0, N\]'):
        furthest_point_sample(torch.rand(1, 10, 3), 11)
    with pytest.raises(TypeError, match='num must be an int'):
        furthest_point_sample(torch.rand(1, 10, 3), 2.0)


@cuda
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    g = torch.Generator().manual_seed(2)
    xyz = (torch.rand(2, 20000, 3, generator=g) * 8).to(dtype)
    idx = furthest_point_sample(xyz.cuda(), 512)
    assert idx.is_cuda
    assert torch.equal(idx.cpu(), furthest_point_sample(xyz, 512))
    assert torch.equal(idx, furthest_point_sample_reference(xyz.cuda(), 512))
    ties = torch.tensor([[[0., 0, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 0]]], dtype=dtype, device='cuda')
    assert furthest_point_sample(ties, 4).tolist() == [[0, 1, 2, 0]]
