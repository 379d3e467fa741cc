"""The logit bias of MAFT's contextual relative position encoding.

``out[b, h, i, j] = sum_a bins[b, h, i, a * L + rel_idx[b, i, j, a]]``: the per-axis bin
values of query row ``i`` (its features projected on the RPE table, [B, H, N, 3L]) gathered
at the bins of its pairs ``(i, j)`` and summed over the three axes. MAFT's decoder adds two
such biases to the cross-attention logits, one from the queries and one from the keys (with
``rel_idx`` transposed). Differentiable in ``bins``: their gradient is the histogram of
``grad_out`` over the bins. The two directions are the sparse steps of
``rpe_attention_value`` with the roles swapped, and use its kernels: one pass over the
[B, H, N, M] pairs each way, where gathering axis by axis takes three (and three
scatter-adds backward). Supported: float32/float64 on CPU; float32/float64/float16/bfloat16 on
CUDA (the gradient accumulates in float32 for the half types).
"""
import torch

from ._checks import INDEX_DTYPES, check_index_range, check_same_device, check_tensor
from .ext_loader import ext_available, load_ext
from .range_flags import check_call, op_flag
from .rpe_attention_value import CPU_DTYPES, CUDA_DTYPES  # the RPE ops take the same dtypes


def rpe_attention_bias(bins, rel_idx):
    """Sum over the three axes of each pair's bin values.

    Args:
        bins: float tensor [B, H, N, 3L], per query row the values of the L bins of each axis
            (axis-major).
        rel_idx: int32/int64 tensor [B, N, M, 3], per pair and axis a bin in [0, L).

    Returns:
        tensor [B, H, N, M] of bins' dtype.
    """
    _check_args(bins, rel_idx)
    if not ext_available() or bins.numel() == 0 or rel_idx.numel() == 0:
        # (the kernels take no empty sizes)
        check_index_range('rel_idx', rel_idx, 0, bins.shape[3] // 3)
        return rpe_attention_bias_reference(bins, rel_idx)
    rel_idx = rel_idx.contiguous()
    if torch.compiler.is_compiling():
        return _forward_op(bins, rel_idx)
    if torch.is_grad_enabled() and bins.requires_grad:
        return _forward(load_ext().rpe_attention_bias_autograd, bins, rel_idx)
    return _forward(load_ext().rpe_attention_bias_forward, bins, rel_idx)  # no autograd


def _check_args(bins, rel_idx):
    dtypes = CUDA_DTYPES if isinstance(bins, torch.Tensor) and bins.is_cuda else CPU_DTYPES
    check_tensor('bins', bins, dtypes, 4, '[B, H, N, 3L]')
    check_tensor('rel_idx', rel_idx, INDEX_DTYPES, 4, '[B, N, M, 3]')
    check_same_device(bins=bins, rel_idx=rel_idx)
    if bins.shape[3] % 3:
        raise ValueError(f'bins must be [B, H, N, 3L] (3 axes of L bins), got {tuple(bins.shape)}')
    if rel_idx.shape[3] != 3 or tuple(rel_idx.shape[:2]) != (bins.shape[0], bins.shape[2]):
        raise ValueError(f'rel_idx must be [B, N, M, 3] = [{bins.shape[0]}, {bins.shape[2]}, M, 3] to '
                         f'match bins, got {tuple(rel_idx.shape)}')


def _forward(kernel, bins, rel_idx):
    """The output of the extension's ``kernel`` (the forward, or the forward with its C++
    autograd node); a rel_idx outside [0, L) is raised as ``range_flags`` says."""
    flag = op_flag('rpe_attention_bias', 'rel_idx has values outside [0, L)', bins)
    out = kernel(bins, rel_idx, flag)
    check_call('rpe_attention_bias', bins, ('rel_idx', rel_idx, 0, bins.shape[3] // 3))
    return out


# The same forward and backward as torch.library custom ops, for torch.compile (as
# rpe_attention_value's).
@torch.library.custom_op('ikne_plugin::rpe_attention_bias_forward', mutates_args=())
def _forward_op(bins: torch.Tensor, rel_idx: torch.Tensor) -> torch.Tensor:
    return _forward(load_ext().rpe_attention_bias_forward, bins, rel_idx)


@_forward_op.register_fake
def _(bins, rel_idx):
    return bins.new_empty(bins.shape[0], bins.shape[1], bins.shape[2], rel_idx.shape[2])


@torch.library.custom_op('ikne_plugin::rpe_attention_bias_backward', mutates_args=())
def _backward_op(grad_out: torch.Tensor, rel_idx: torch.Tensor, num_bins: int) -> torch.Tensor:
    return load_ext().rpe_attention_bias_backward(grad_out.contiguous(), rel_idx, num_bins)


@_backward_op.register_fake
def _(grad_out, rel_idx, num_bins):
    return grad_out.new_empty(grad_out.shape[0], grad_out.shape[1], grad_out.shape[2], 3 * num_bins)


def _save_for_backward_op(ctx, inputs, output):
    bins, rel_idx = inputs
    ctx.save_for_backward(rel_idx)
    ctx.num_bins = bins.shape[3] // 3


def _backward_of_op(ctx, grad_out):
    rel_idx, = ctx.saved_tensors
    return _backward_op(grad_out, rel_idx, ctx.num_bins), None


_forward_op.register_autograd(_backward_of_op, setup_context=_save_for_backward_op)


def rpe_attention_bias_reference(bins, rel_idx):
    """Pure-PyTorch ``rpe_attention_bias``: one gather per axis (MAFT's form)."""
    heads, num_bins = bins.shape[1], bins.shape[3] // 3
    out = 0
    for axis in range(3):
        index = rel_idx[..., axis].long()[:, None].expand(-1, heads, -1, -1)  # [B, H, N, M]
        out = out + torch.gather(bins[..., axis * num_bins:(axis + 1) * num_bins], 3, index)
    return out
