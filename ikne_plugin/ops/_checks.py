"""Argument checks shared by the op wrappers: wrong input raises a Python
TypeError/ValueError that says what was expected, before any kernel runs."""
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


def check_same_device(**tensors):
    """Check that all tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f'all tensors must be on one device, got {devices}')


def check_index_range(name, index, low, high):
    """Check low <= index < high elementwise (one reduction; no-op when empty)."""
    if index.numel() == 0:
        return
    lo, hi = torch.aminmax(index)
    lo, hi = int(lo), int(hi)
    if lo < low or hi >= high:
        raise ValueError(f'{name} must lie in [{low}, {high}), got values in [{lo}, {hi}]')
