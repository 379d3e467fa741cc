"""ikne_plugin.ops.voxelize: extension vs torch.unique reference, order, errors, fallback."""
import warnings

import pytest
import torch

from ikne_plugin.ops import ext_loader
from ikne_plugin.ops.voxelize import BATCH_LIMIT, COORD_LIMIT, voxelize, voxelize_reference

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def require_extension():
    assert ext_loader.load_ext() is not None, 'build ikne_plugin._ext first (setup.py build_ext --inplace)'


def random_coords(n, extent, batches=2, dtype=torch.int64, seed=0):
    """Points with many duplicate voxels: coordinates drawn from a small cube."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, batches, (n, 1), generator=g)
    xyz = torch.randint(0, extent, (n, 3), generator=g)
    return torch.cat([batch, xyz], 1).to(dtype)


def check_voxelization(coords, voxel_coords, p2v):
    """Round trip, uniqueness and first-occurrence order, checked from scratch."""
    assert voxel_coords.dtype == torch.int32 and p2v.dtype == torch.int64
    assert torch.equal(voxel_coords[p2v].long(), coords.long())
    assert torch.unique(voxel_coords, dim=0).shape[0] == voxel_coords.shape[0]
    first = {}
    for i, v in enumerate(p2v.tolist()):
        first.setdefault(v, i)
    assert sorted(first) == list(range(voxel_coords.shape[0]))
    assert [first[v] for v in range(len(first))] == sorted(first.values())


@pytest.mark.parametrize('dtype', [torch.int32, torch.int64])
def test_matches_reference(dtype):
    coords = random_coords(5000, 12, dtype=dtype, seed=1)
    voxel_coords, p2v = voxelize(coords)
    ref_coords, ref_p2v = voxelize_reference(coords)
    check_voxelization(coords, voxel_coords, p2v)
    check_voxelization(coords, ref_coords, ref_p2v)
    assert torch.equal(voxel_coords, ref_coords) and torch.equal(p2v, ref_p2v)
    assert voxel_coords.shape[0] < 5000  # the test has duplicates


def test_extreme_coordinates_and_keys_that_collide_in_low_bits():
    top = [BATCH_LIMIT - 1, COORD_LIMIT - 1, COORD_LIMIT - 1, COORD_LIMIT - 1]
    coords = torch.tensor([top, [0, 0, 0, 0], top, [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0],
                           [0, 0, 1, 0], [0, 0, 0, 1]])
    voxel_coords, p2v = voxelize(coords)
    check_voxelization(coords, voxel_coords, p2v)
    assert voxel_coords.shape[0] == 6 and p2v.tolist() == [0, 1, 0, 2, 3, 4, 5, 2]


def test_empty_and_single():
    for coords in (torch.zeros(0, 4, dtype=torch.long), torch.tensor([[0, 3, 4, 5]])):
        voxel_coords, p2v = voxelize(coords)
        assert voxel_coords.shape == coords.shape and p2v.shape == (coords.shape[0],)
        assert torch.equal(voxel_coords.long(), coords)


@pytest.mark.parametrize('coords, error, match', [
    (torch.zeros(3, 4), TypeError, 'int32 or int64'),
    (torch.zeros(3, 3, dtype=torch.long), ValueError, r'\[N, 4\]'),
    (torch.zeros(4, dtype=torch.long), ValueError, r'\[N, 4\]'),
    (torch.tensor([[0, -1, 0, 0]]), ValueError, r'x, y, z.*\[0, 65536\)'),
    (torch.tensor([[0, 0, COORD_LIMIT, 0]]), ValueError, r'x, y, z.*\[0, 65536\)'),
    (torch.tensor([[BATCH_LIMIT, 0, 0, 0]]), ValueError, r'batch.*\[0, 32768\)'),
    ([[0, 0, 0, 0]], TypeError, 'torch.Tensor'),
])
def test_bad_input_raises(coords, error, match):
    with pytest.raises(error, match=match):
        voxelize(coords)


def test_extension_flags_range_instead_of_raising():
    """The compiled op never raises on data: it sets a flag that the wrapper turns into the error."""
    ext = ext_loader.load_ext()
    assert ext.voxelize(torch.tensor([[0, COORD_LIMIT - 1, 0, 0]]))[2].item() == 0
    assert ext.voxelize(torch.tensor([[0, COORD_LIMIT, 0, 0]]))[2].item() == 1
    assert ext.voxelize(torch.tensor([[-1, 0, 0, 0]]))[2].item() == 1


def test_fallback_without_extension_warns_once(monkeypatch):
    def no_extension(name):
        raise ImportError(f'No module named {name!r} (simulated)')

    ext_loader.load_ext.cache_clear()
    monkeypatch.setattr(ext_loader.importlib, 'import_module', no_extension)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            assert ext_loader.load_ext() is None and ext_loader.load_ext() is None
        assert len(caught) == 1 and 'simulated' in str(caught[0].message)
        coords = random_coords(300, 4, seed=2)
        for got, want in zip(voxelize(coords), voxelize_reference(coords)):
            assert torch.equal(got, want)
        with pytest.raises(ValueError, match=r'x, y, z.*\[0, 65536\)'):
            voxelize(torch.tensor([[0, 0, 0, COORD_LIMIT]]))
    finally:
        monkeypatch.undo()
        ext_loader.load_ext.cache_clear()
    assert ext_loader.load_ext() is not None


@cuda
@pytest.mark.parametrize('dtype', [torch.int32, torch.int64])
def test_cuda_matches_cpu_and_reference(dtype):
    coords = random_coords(200_000, 40, batches=3, dtype=dtype, seed=3)
    cpu_coords, cpu_p2v = voxelize(coords)
    voxel_coords, p2v = voxelize(coords.cuda())
    assert voxel_coords.is_cuda and p2v.is_cuda
    assert torch.equal(voxel_coords.cpu(), cpu_coords) and torch.equal(p2v.cpu(), cpu_p2v)
    ref_coords, ref_p2v = voxelize_reference(coords.cuda())
    assert torch.equal(ref_coords.cpu(), cpu_coords) and torch.equal(ref_p2v.cpu(), cpu_p2v)
    small = random_coords(2000, 6, seed=4).cuda()
    check_voxelization(small.cpu(), *(t.cpu() for t in voxelize(small)))


@cuda
def test_cuda_empty_and_range_check():
    voxel_coords, p2v = voxelize(torch.zeros(0, 4, dtype=torch.long, device='cuda'))
    assert voxel_coords.shape == (0, 4) and p2v.shape == (0,) and p2v.is_cuda
    with pytest.raises(ValueError, match='x, y, z'):
        voxelize(torch.tensor([[0, 0, -5, 0]], device='cuda'))
    with pytest.raises(ValueError, match=r'batch.*\[0, 32768\)'):
        voxelize(torch.tensor([[0, 0, 0, 0], [BATCH_LIMIT, 0, 0, 0]], device='cuda'))
    assert ext_loader.load_ext().voxelize(torch.tensor([[0, COORD_LIMIT, 0, 0]], device='cuda'))[2].item() == 1
