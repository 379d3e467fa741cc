"""The value term of MAFT's contextual relative position encoding.

``out[b, h, i] = sum_j attn[b, h, i, j] * sum_a table[a, rel_idx[b, i, j, a], h]``
for the three axes ``a`` of the query-superpoint offset, each binned into
``L`` bins (MAFT: 48 bins of 10 cm; any L works here). Differentiable in
``attn`` and ``table``. Both the kernels and the reference factor the sum
through a per-axis histogram of the attention over the bins, which replaces a
[B, H, Nq, Ns, D] gather by a [B, H, Nq, 3L] one. Supported: float32/float64
on CPU; float32/float64/float16/bfloat16 on CUDA (histograms accumulate in
float32 for the half types). On CUDA the float32/float64 table gradient adds
the sums of spans of query rows with atomics, so its rounding is not
bit-deterministic, unless ``torch.use_deterministic_algorithms`` is on.
"""
from typing import Tuple

import torch

from ._checks import INDEX_DTYPES, check_index_range, check_same_device, check_tensor
from .ext_loader import ext_available, load_ext
from .range_flags import check_call, op_flag

CPU_DTYPES = (torch.float32, torch.float64)
CUDA_DTYPES = CPU_DTYPES + (torch.float16, torch.bfloat16)


def rpe_attention_value(attn, rel_idx, table):
    """Attention-weighted sum of relative-position value embeddings.

    Args:
        attn: float tensor [B, H, Nq, Ns], attention of queries over superpoints.
        rel_idx: int32/int64 tensor [B, Nq, Ns, 3], per-axis bin in [0, L).
        table: tensor [3, L, H, D] of attn's dtype, per-axis value embeddings.

    Returns:
        tensor [B, H, Nq, D] of attn's dtype.
    """
    _check_args(attn, rel_idx, table)
    if not ext_available() or attn.numel() == 0 or table.numel() == 0:
        # (the kernels take no empty sizes)
        check_index_range('rel_idx', rel_idx, 0, table.shape[1])
        return rpe_attention_value_reference(attn, rel_idx, table)
    rel_idx, table = rel_idx.contiguous(), table.contiguous()
    needs_grad = torch.is_grad_enabled() and (attn.requires_grad or table.requires_grad)
    save_hist = needs_grad and table.requires_grad  # the histogram serves the table's gradient
    if torch.compiler.is_compiling():
        return _forward_op(attn, rel_idx, table, save_hist)[0]
    if needs_grad:
        return _forward(load_ext().rpe_attention_value_autograd, attn, rel_idx, table, save_hist)
    return _forward(load_ext().rpe_attention_value_forward, attn, rel_idx, table, False)[0]  # no autograd


def _check_args(attn, rel_idx, table):
    dtypes = CUDA_DTYPES if isinstance(attn, torch.Tensor) and attn.is_cuda else CPU_DTYPES
    check_tensor('attn', attn, dtypes, 4, '[B, H, Nq, Ns]')
    check_tensor('rel_idx', rel_idx, INDEX_DTYPES, 4, '[B, Nq, Ns, 3]')
    check_tensor('table', table, (attn.dtype,), 4, '[3, L, H, D] of the dtype of attn')
    check_same_device(attn=attn, rel_idx=rel_idx, table=table)
    batch, heads, queries, keys = attn.shape
    if tuple(rel_idx.shape) != (batch, queries, keys, 3):
        raise ValueError(f'rel_idx must be [B, Nq, Ns, 3] = [{batch}, {queries}, {keys}, 3] to '
                         f'match attn, got {tuple(rel_idx.shape)}')
    if table.shape[0] != 3 or table.shape[2] != heads:
        raise ValueError(f'table must be [3, L, H, D] with H = {heads}, got {tuple(table.shape)}')


def _forward(kernel, attn, rel_idx, table, save_hist):
    """What the extension's ``kernel`` returns (the forward's (out, hist or None), or the output
    of the forward with its C++ autograd node, which saves the small [B, H, Nq, 3L] histogram
    only for the table's gradient); a rel_idx outside [0, L) is raised as ``range_flags`` says."""
    flag = op_flag('rpe_attention_value', 'rel_idx has values outside [0, L)', attn)
    result = kernel(attn, rel_idx, table, save_hist, flag)
    check_call('rpe_attention_value', attn, ('rel_idx', rel_idx, 0, table.shape[1]))
    return result


# The same forward and backward as torch.library custom ops, for torch.compile (eager calls
# take the extension's C++ autograd node, cheaper on the host than these): opaque to
# it (their bodies, range flags included, run as they are), differentiable through
# register_autograd, with fake implementations that give the compiler their output shapes.
# Empty tensors stand for the Nones (a custom op returns tensors).
@torch.library.custom_op('ikne_plugin::rpe_attention_value_forward', mutates_args=())
def _forward_op(attn: torch.Tensor, rel_idx: torch.Tensor, table: torch.Tensor,
                save_hist: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    out, hist = _forward(load_ext().rpe_attention_value_forward, attn, rel_idx, table, save_hist)
    return out, (hist if hist is not None else attn.new_empty(0))


@_forward_op.register_fake
def _(attn, rel_idx, table, save_hist):
    batch, heads, queries = attn.shape[:3]
    hist_shape = (batch, heads, queries, 3 * table.shape[1]) if save_hist else (0,)
    return (attn.new_empty(batch, heads, queries, table.shape[3]),
            attn.new_empty(hist_shape, dtype=_op_math(attn.dtype)))


@torch.library.custom_op('ikne_plugin::rpe_attention_value_backward', mutates_args=())
def _backward_op(grad_out: torch.Tensor, rel_idx: torch.Tensor, table: torch.Tensor,
                 hist: torch.Tensor, attn_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    grad_attn, grad_table = load_ext().rpe_attention_value_backward(  # (None where not asked for)
        grad_out.contiguous(), rel_idx, table, hist if hist.numel() else None, attn_grad)
    empty = grad_out.new_empty(0)
    return (grad_attn if grad_attn is not None else empty,
            grad_table if grad_table is not None else empty)


@_backward_op.register_fake
def _(grad_out, rel_idx, table, hist, attn_grad):
    batch, heads, queries = grad_out.shape[:3]
    grad_attn = grad_out.new_empty((batch, heads, queries, rel_idx.shape[2]) if attn_grad else (0,))
    return grad_attn, table.new_empty(table.shape if hist.numel() else (0,))


def _save_for_backward_op(ctx, inputs, output):
    _, rel_idx, table, _ = inputs
    ctx.save_for_backward(rel_idx, table, output[1])


def _backward_of_op(ctx, grad_out, _grad_hist):
    rel_idx, table, hist = ctx.saved_tensors
    attn_grad, _, table_grad, _ = ctx.needs_input_grad
    grad_attn, grad_table = _backward_op(grad_out, rel_idx, table,
                                         hist if table_grad else hist.new_empty(0), attn_grad)
    return (grad_attn if attn_grad else None), None, (grad_table if table_grad else None), None


_forward_op.register_autograd(_backward_of_op, setup_context=_save_for_backward_op)


def _op_math(dtype):
    """The dtype the kernels accumulate in (float32 for the half types)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def rpe_attention_value_reference(attn, rel_idx, table):
    """Pure-PyTorch ``rpe_attention_value``: scatter-add the attention into the L
    bins of each axis ([B, H, Nq, 3, L]), then contract with the table."""
    batch, heads, queries, keys = attn.shape
    num_bins = table.shape[1]
    index = rel_idx.long().permute(0, 1, 3, 2)[:, None].expand(batch, heads, queries, 3, keys)
    weights = attn[:, :, :, None, :].expand(batch, heads, queries, 3, keys)
    hist = attn.new_zeros(batch, heads, queries, 3, num_bins).scatter_add(-1, index, weights)
    return torch.einsum('bhnal,alhd->bhnd', hist, table)
