"""Ball query: for each centre, the first ``num_neighbors`` points (in point order) whose
squared distance is below ``radius ** 2`` (rounded to the points' dtype).

Unfilled slots repeat the first neighbour (harmless under max pooling); a centre with no
neighbour gets -1 throughout. CPU, CUDA and the reference round the squared distance as
``(dx*dx + dy*dy) + dz*dz`` and give identical indices. mmcv's version is CUDA-only.
"""
import numbers

import torch

from ._checks import as_int, check_point_batch, check_same_device
from .ext_loader import load_ext


def ball_query(center_xyz, xyz, radius, num_neighbors):
    """Neighbour indices int64 [B, M, num_neighbors] of ``center_xyz`` [B, M, 3] among ``xyz`` [B, N, 3]."""
    check_point_batch('center_xyz', center_xyz)
    check_point_batch('xyz', xyz)
    check_same_device(center_xyz=center_xyz, xyz=xyz)
    if center_xyz.dtype != xyz.dtype or center_xyz.shape[0] != xyz.shape[0]:
        raise ValueError(f'center_xyz and xyz must share dtype and batch size, got {center_xyz.dtype} '
                         f'{tuple(center_xyz.shape)} and {xyz.dtype} {tuple(xyz.shape)}')
    if not isinstance(radius, numbers.Real) or not radius > 0:
        raise ValueError(f'radius must be a positive number, got {radius!r}')
    num_neighbors = as_int('num_neighbors', num_neighbors)
    if num_neighbors < 1:
        raise ValueError(f'num_neighbors must be >= 1, got {num_neighbors}')
    ext = load_ext()
    if ext is None:
        return ball_query_reference(center_xyz, xyz, radius, num_neighbors)
    return ext.ball_query(center_xyz.contiguous(), xyz.contiguous(), float(radius), num_neighbors)


def ball_query_reference(center_xyz, xyz, radius, num_neighbors):
    """Pure-PyTorch ``ball_query`` over the dense [B, M, N] distance matrix."""
    diff = xyz[:, None] - center_xyz[:, :, None]  # [B, M, N, 3]
    d = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    inside = d < torch.tensor(radius * radius, dtype=xyz.dtype)
    n = xyz.shape[1]
    # Rank the points inside by index (outside ones sort last), keep the first num_neighbors.
    order = torch.where(inside, torch.arange(n, device=xyz.device), n)
    first = order.sort(-1).values[..., :num_neighbors]
    if first.shape[-1] < num_neighbors:  # fewer points than slots
        first = torch.cat([first, first.new_full((*first.shape[:2], num_neighbors - n), n)], -1)
    fill = torch.where(first[..., :1] < n, first[..., :1], -1)
    return torch.where(first < n, first, fill)
