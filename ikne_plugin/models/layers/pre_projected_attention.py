"""Multi-head attention over inputs that are already projected (Conditional DETR style)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ikne_plugin.ops import rpe_attention_value


class PreProjectedAttention(nn.Module):
    """Scaled dot-product attention per head, followed by an output projection.

    Conditional DETR (and MAFT after it) projects queries, keys and values with
    separate content/position linears outside the attention, so this module owns only
    ``out_proj`` (``self_attn.out_proj`` / ``cross_attn.out_proj`` in checkpoints).
    The logits are scaled by ``key_dim ** -0.5`` where key_dim is the per-head width of
    ``q``/``k`` (for MAFT's cross-attention that is the concatenated content+position
    width, i.e. twice the value width).
    """

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None,
                value_rpe: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """Attend and project.

        Args:
            q: [B, H, Q, Dk] queries (unscaled), k: [B, H, S, Dk], v: [B, H, S, Dv].
            logit_bias: optional [B, H, Q, S] added to the scaled logits; -inf blocks a
                pair. Every row must keep at least one finite entry (the caller guarantees it).
            value_rpe: optional ``(rel_idx [B, Q, S, 3], table [3, L, H, Dv])``: adds
                ``rpe_attention_value(attn, rel_idx, table)`` to the attended values.

        Returns:
            [B * Q, H * Dv], the rows scene after scene (2D: no reshapes around the projection).
        """
        B, H, Q, Dk = q.shape
        if value_rpe is None:
            # One fused op, forward and backward (flash or memory-efficient kernels on the GPU),
            # that takes the heads' strided views as they are; its default scale is Dk ** -0.5.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=logit_bias)
        else:  # the value RPE term needs the attention probabilities themselves
            attn = self._probabilities(q, k, logit_bias)
            out = attn @ v + rpe_attention_value(attn, *value_rpe)
        return self.out_proj(out.transpose(1, 2).reshape(B * Q, -1))

    @staticmethod
    def _probabilities(q: torch.Tensor, k: torch.Tensor, logit_bias: Optional[torch.Tensor]) -> torch.Tensor:
        """softmax(q k^T * Dk ** -0.5 + logit_bias) over the keys: [B, H, Q, S]."""
        B, H, Q, Dk = q.shape
        q = q * Dk ** -0.5
        if logit_bias is None:
            return (q @ k.transpose(-1, -2)).softmax(dim=-1)
        # The bias is the product's accumulator: one copy of it, no pass over the logits. Not in
        # place: the bias's [B * H, Q, S] form is a view, and an in-place op on a view costs the
        # backward four copies of the logits (autograd's CopySlices and AsStridedBackward).
        logits = torch.baddbmm(logit_bias.reshape(B * H, Q, -1), q.reshape(B * H, Q, Dk),
                               k.reshape(B * H, -1, Dk).transpose(1, 2))
        return logits.view(B, H, Q, -1).softmax(dim=-1)
