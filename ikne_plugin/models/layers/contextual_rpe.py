"""Contextual relative position encoding between queries and superpoints (MAFT, ICCV 2023).

The offset query centre - key centroid is quantised per axis into ``num_bins`` bins of
``bin_size`` metres; each attention layer holds three tables (query, key, value) in
MAFT's parameter layout ``[heads, head_dim, 3 * num_bins]`` (axis-major along the last
dimension). The query and key tables add a bias to the attention logits
(``ikne_plugin.ops.rpe_attention_bias``); the value table adds
``sum_j A_ij sum_axes table_v[bin]`` to the output (``rpe_attention_value``). Semantics from
maft/model/transformer.py and maft/model/attention_rpe.py.
"""
import torch

from ikne_plugin.ops import rpe_attention_bias


def relative_position_bins(query_xyz: torch.Tensor, key_xyz: torch.Tensor, num_bins: int,
                           bin_size: float) -> torch.Tensor:
    """Bin index per axis of ``query_xyz[b, i] - key_xyz[b, j]``.

    Args:
        query_xyz: [B, Q, 3] query centres in metres.
        key_xyz: [B, S, 3] key (superpoint) centroids in metres.
        num_bins: bins per axis (even); offsets beyond the range fall in the end bins.
        bin_size: bin width in metres.

    Returns:
        int32 [B, Q, S, 3] in ``[0, num_bins)``: ``clamp(floor(rel / bin_size),
        -num_bins/2, num_bins/2 - 1) + num_bins/2``. int32 halves what the RPE ops read and
        keep for the backward (a [B, Q, S, 3] tensor per layer); clamped before the
        conversion, so any offset converts exactly.
    """
    half = num_bins // 2
    rel = query_xyz.detach()[:, :, None, :] - key_xyz.detach()[:, None, :, :]
    # torch.div(..., 'floor') as MAFT, not floor(rel * (1 / bin_size)): same bins at the edges.
    idx = torch.div(rel, bin_size, rounding_mode='floor').clamp_(-half, half - 1)
    return idx.to(torch.int32).add_(half)


def query_rpe_bias(q: torch.Tensor, table: torch.Tensor, rel_idx: torch.Tensor) -> torch.Tensor:
    """Logit bias ``sum_axes q[b,h,i] . table[h, :, axis * L + rel_idx[b,i,j,axis]]``.

    q: [B, H, Q, D] (already scaled as the logits), table: [H, D, 3 * L],
    rel_idx: [B, Q, S, 3] -> [B, H, Q, S].
    """
    return rpe_attention_bias(q @ table, rel_idx)  # [B, H, Q, 3L], the table broadcast over B


def key_rpe_bias(k: torch.Tensor, table: torch.Tensor, rel_idx: torch.Tensor) -> torch.Tensor:
    """Logit bias ``sum_axes k[b,h,j] . table[h, :, axis * L + rel_idx[b,i,j,axis]]``.

    k: [B, H, S, D], table: [H, D, 3 * L], rel_idx: [B, Q, S, 3] -> [B, H, Q, S].
    """
    k_table = k @ table  # [B, H, S, 3L]
    return rpe_attention_bias(k_table, rel_idx.transpose(1, 2)).transpose(2, 3)


def value_table_to_op_layout(table: torch.Tensor) -> torch.Tensor:
    """MAFT's ``[H, D, 3 * L]`` value table -> ``rpe_attention_value``'s ``[3, L, H, D]``."""
    H, D, three_l = table.shape
    return table.view(H, D, 3, three_l // 3).permute(2, 3, 0, 1).contiguous()
