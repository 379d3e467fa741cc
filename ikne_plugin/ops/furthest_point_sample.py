"""Farthest point sampling: ``num`` indices per batch, each the point farthest from those
chosen before (the first is point 0; ties go to the smallest index).

Squared distances are rounded as ``(dx*dx + dy*dy) + dz*dz`` by the CPU and CUDA kernels and
the reference alike, so the three give identical indices. mmcv's version is CUDA-only.
"""
import torch

from ._checks import as_int, check_point_batch
from .ext_loader import load_ext


def furthest_point_sample(xyz, num):
    """Indices int64 [B, num] of ``num`` farthest point samples of each batch of ``xyz`` [B, N, 3]."""
    check_point_batch('xyz', xyz)
    num = as_int('num', num)
    if num < 0 or num > xyz.shape[1]:
        raise ValueError(f'num must lie in [0, N] = [0, {xyz.shape[1]}], got {num}')
    ext = load_ext()
    if ext is None:
        return furthest_point_sample_reference(xyz, num)
    return ext.furthest_point_sample(xyz.contiguous(), num)


def furthest_point_sample_reference(xyz, num):
    """Pure-PyTorch ``furthest_point_sample`` (one vectorised step per sample)."""
    batches, n, _ = xyz.shape
    idx = xyz.new_zeros((batches, num), dtype=torch.long)
    if num == 0:
        return idx
    dist = torch.full((batches, n), float('inf'), dtype=xyz.dtype, device=xyz.device)
    rows = torch.arange(batches, device=xyz.device)
    for s in range(1, num):
        diff = xyz - xyz[rows, idx[:, s - 1]][:, None]
        d = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
        dist = torch.minimum(dist, d)
        idx[:, s] = dist.argmax(1)  # the first maximum
    return idx
