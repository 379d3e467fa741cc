"""Argument checks shared by the op wrappers: wrong input raises a Python
TypeError/ValueError that says what was expected. Dtypes, shapes and devices
are checked before any kernel runs; index ranges, visible only in the data,
are flagged by the kernels (``range_flags``), so the compiled ops never raise."""
import operator

import torch

INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensor(name, tensor, dtypes, ndim, what):
    """Check that ``tensor`` is a torch.Tensor of one of ``dtypes`` with ``ndim`` dims."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor {what}, got {type(tensor).__name__}')
    if tensor.dtype not in dtypes:
        names = ' or '.join(str(d).replace('torch.', '') for d in dtypes)
        raise TypeError(f'{name} must be {names} {what}, got {tensor.dtype}')
    if tensor.dim() != ndim:
        raise ValueError(f'{name} must be {what}, got shape {tuple(tensor.shape)}')


def as_int(name, value):
    """``value`` (a Python or numpy int, or a 0-dim integer tensor) as an int, else TypeError."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f'{name} must be an int, got {type(value).__name__}') from None


def check_same_device(**tensors):
    """Check that all tensors live on one device (cheap when they do)."""
    first, *rest = tensors.values()
    device = first.device
    for tensor in rest:
        if tensor.device != device:
            devices = {name: t.device for name, t in tensors.items()}
            raise ValueError(f'all tensors must be on one device, got {devices}')


def check_index_range(name, index, low, high):
    """Check low <= index < high elementwise (one reduction; no-op when empty)."""
    if index.numel() == 0:
        return
    lo, hi = torch.aminmax(index)
    lo, hi = int(lo), int(hi)
    if lo < low or hi >= high:
        raise ValueError(f'{name} must lie in [{low}, {high}), got values in [{lo}, {hi}]')


def check_point_batch(name, xyz):
    """Check that ``xyz`` is a float32/float64 tensor [B, N, 3] (furthest_point_sample, ball_query)."""
    check_tensor(name, xyz, (torch.float32, torch.float64), 3, '[B, N, 3] of x, y, z')
    if xyz.shape[2] != 3:
        raise ValueError(f'{name} must be [B, N, 3] of x, y, z, got shape {tuple(xyz.shape)}')
