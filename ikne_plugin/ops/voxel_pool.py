"""Differentiable pooling of point features into voxels (or superpoints).

``mean`` averages the points of a voxel (the gradient is divided by the count);
``max`` takes the per-channel maximum (the gradient goes to the arg-max point,
the smallest point index among ties). Empty voxels give 0. NaN features are
not supported by ``max``. Supported: float32/float64 on CPU and CUDA (CUDA
``mean`` sums with atomics, so its float rounding is not bit-deterministic).
"""
import torch

from ._checks import as_int, check_index_range, check_same_device, check_tensor
from .ext_loader import load_ext
from .range_flags import check_call, op_flag

FLOAT_DTYPES = (torch.float32, torch.float64)
MODES = ('mean', 'max')


def voxel_pool(feats, p2v, num_voxels, mode='mean'):
    """Pool ``feats`` [N, C] into [num_voxels, C] by point-to-voxel index ``p2v`` [N]."""
    check_tensor('feats', feats, FLOAT_DTYPES, 2, '[N, C] point features')
    check_tensor('p2v', p2v, (torch.int64, torch.int32), 1, '[N] voxel index per point')
    if p2v.shape[0] != feats.shape[0]:
        raise ValueError(f'p2v must have one entry per point ({feats.shape[0]}), got {p2v.shape[0]}')
    check_same_device(feats=feats, p2v=p2v)
    num_voxels = as_int('num_voxels', num_voxels)
    if num_voxels < 0:
        raise ValueError(f'num_voxels must be >= 0, got {num_voxels}')
    if mode not in MODES:
        raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
    if p2v.dtype != torch.int64:
        p2v = p2v.long()
    ext = load_ext()
    if ext is None or feats.numel() == 0 or num_voxels == 0:  # the kernels take no empty sizes
        check_index_range('p2v', p2v, 0, num_voxels)
        return voxel_pool_reference(feats, p2v, num_voxels, mode)
    if feats.requires_grad and torch.is_grad_enabled():
        return _pool(ext.voxel_pool_autograd, feats, p2v, num_voxels, mode == 'max')
    return _pool(ext.voxel_pool_forward, feats, p2v, num_voxels, mode == 'max')[0]  # no autograd


def _pool(kernel, feats, p2v, num_voxels, use_max):
    """What the extension's ``kernel`` returns (the forward's (out, aux), or the output of the
    forward with its C++ autograd node); a p2v outside [0, num_voxels) is raised as
    ``range_flags`` says."""
    flag = op_flag('voxel_pool', 'p2v has values outside [0, num_voxels)', feats)
    result = kernel(feats, p2v, num_voxels, use_max, flag)
    check_call('voxel_pool', feats, ('p2v', p2v, 0, num_voxels))
    return result


def voxel_pool_reference(feats, p2v, num_voxels, mode='mean'):
    """Pure-PyTorch ``voxel_pool`` (index_add_ / scatter_reduce), differentiable."""
    p2v = p2v.long()
    channels = feats.shape[1]
    if mode == 'mean':
        summed = feats.new_zeros(num_voxels, channels).index_add(0, p2v, feats)
        counts = torch.bincount(p2v, minlength=num_voxels).clamp(min=1).to(feats.dtype)
        return summed / counts[:, None]
    # scatter_reduce's amax splits the gradient evenly among ties; pick the
    # smallest tied index explicitly so both paths agree.
    with torch.no_grad():
        best = feats.new_full((num_voxels, channels), float('-inf'))
        best.scatter_reduce_(0, p2v[:, None].expand(-1, channels), feats, reduce='amax')
        is_best = feats == best[p2v]
        points = torch.arange(feats.shape[0], device=feats.device)[:, None].expand(-1, channels)
        argmax = torch.full((num_voxels, channels), feats.shape[0], device=feats.device)
        argmax.scatter_reduce_(0, p2v[:, None].expand(-1, channels),
                               torch.where(is_best, points, feats.shape[0]), reduce='amin')
    padded = torch.cat([feats, feats.new_zeros(1, channels)])  # row N: the value of empty voxels
    return padded.gather(0, argmax)
