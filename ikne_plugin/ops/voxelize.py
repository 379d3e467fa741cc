"""Unique voxels of integer point coordinates, and each point's voxel.

The extension hashes each (batch, x, y, z) packed into a 64-bit key (16 bits a
component): batch must lie in [0, 2^15) and x, y, z in [0, 2^16), i.e. up to
1,310 m a side at 2 cm. Voxels come in the order of their first point on the
CPU and on CUDA alike (CUDA keeps, per voxel, the smallest point index by
atomicMin and ranks first points with a prefix sum), so both are deterministic.
"""
import torch

from ._checks import INDEX_DTYPES, check_index_range, check_tensor
from .ext_loader import load_ext
from .range_flags import raise_range_error

BATCH_LIMIT = 1 << 15
COORD_LIMIT = 1 << 16


def voxelize(coords):
    """Group points by voxel.

    Args:
        coords: int32/int64 tensor [N, 4] of (batch_idx, x, y, z) voxel indices.

    Returns:
        voxel_coords: int32 [M, 4], the distinct rows of ``coords`` in order of
            first occurrence.
        p2v: int64 [N], the voxel of each point: ``voxel_coords[p2v] == coords``.
    """
    check_tensor('coords', coords, INDEX_DTYPES, 2, '[N, 4] of (batch, x, y, z)')
    if coords.shape[1] != 4:
        raise ValueError(f'coords must be [N, 4] of (batch, x, y, z), got shape {tuple(coords.shape)}')
    ext = load_ext()
    if ext is None:
        for args in _coord_ranges(coords):
            check_index_range(*args)
        return voxelize_reference(coords)
    voxel_coords, p2v, flag = ext.voxelize(coords.contiguous())
    if flag.item():  # a CPU tensor on both devices: the voxel count needs the host anyway
        raise_range_error('voxelize', *_coord_ranges(coords))
    return voxel_coords, p2v


def _coord_ranges(coords):
    """The packed key's limits: batch in [0, 2^15), x, y, z in [0, 2^16)."""
    return [('coords[:, 0] (batch index)', coords[:, 0], 0, BATCH_LIMIT),
            ('coords[:, 1:] (x, y, z)', coords[:, 1:], 0, COORD_LIMIT)]


def voxelize_reference(coords):
    """Pure-PyTorch ``voxelize`` (torch.unique), with the same first-occurrence order."""
    unique, inverse = torch.unique(coords, dim=0, return_inverse=True)
    num_voxels = unique.shape[0]
    # torch.unique sorts; renumber voxels by their first point.
    points = torch.arange(inverse.numel(), device=coords.device)
    first_point = torch.full((num_voxels,), inverse.numel(), dtype=torch.long, device=coords.device)
    first_point.scatter_reduce_(0, inverse, points, reduce='amin')
    order = torch.argsort(first_point)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_voxels, device=coords.device)
    return unique[order].to(torch.int32), rank[inverse]
