"""One block of MAFT's query decoder: Conditional-DETR self/cross-attention with contextual RPE."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .contextual_rpe import key_rpe_bias, query_rpe_bias, value_table_to_op_layout
from .grouped_linear import grouped_linear
from .pre_projected_attention import PreProjectedAttention


class QueryDecoderLayer(nn.Module):
    """Post-norm decoder block: self-attention, RPE cross-attention to superpoints, FFN.

    Follows maft/model/transformer.py (``TransformerDecoderLayer.forward_post``):

    - self-attention: q = Wqc t + Wqp p, k = Wkc t + Wkp p, v = Wv t (t content
      queries, p query position embedding);
    - cross-attention, per head: q = [Wqc t (+ Wqp p in the first layer only), Wqs s],
      k = [Wkc m (+ Wkp e in the first layer only), Wkp e], v = Wv m (s Fourier features
      of the query centre, m superpoint features, e their position encoding), scaled by
      (2 * head_dim) ** -0.5; logits += contextual RPE bias of the (scaled) content
      query half and of the content key half; output += value RPE term;
    - FFN with GELU; LayerNorm after each residual.

    Names and shapes follow MAFT, so its checkpoints map 1:1. ``ca_qpos_proj`` exists
    only in the first layer (``first_layer=True``), as in MAFT.
    """

    def __init__(self, d_model: int = 256, num_heads: int = 8, ffn_dim: int = 1024,
                 rpe_num_bins: int = 48, first_layer: bool = False):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f'd_model ({d_model}) must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)
        self.sa_v_proj = nn.Linear(d_model, d_model)
        self.self_attn = PreProjectedAttention(d_model, num_heads)

        self.ca_qcontent_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_proj = nn.Linear(d_model, d_model) if first_layer else None
        self.ca_kcontent_proj = nn.Linear(d_model, d_model)
        self.ca_kpos_proj = nn.Linear(d_model, d_model)
        self.ca_v_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_sine_proj = nn.Linear(d_model, d_model)
        self.cross_attn = PreProjectedAttention(d_model, num_heads)

        table_shape = (num_heads, d_model // num_heads, 3 * rpe_num_bins)
        self.relative_pos_query_table = nn.Parameter(torch.zeros(table_shape))
        self.relative_pos_key_table = nn.Parameter(torch.zeros(table_shape))
        self.relative_pos_value_table = nn.Parameter(torch.zeros(table_shape))

        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def _heads(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """[B * N, H * D] -> [B, H, N, D]."""
        rows, C = x.shape
        return x.view(batch_size, rows // batch_size, self.num_heads, C // self.num_heads).transpose(1, 2)

    @staticmethod
    def project_memory(layers: Sequence['QueryDecoderLayer'], memory: torch.Tensor,
                       memory_pos: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention inputs from the superpoints, which stay the same from
        layer to layer, for all ``layers`` in two products: per layer ``(Wkc m, Wkp e, Wv m)``
        ([B * S, C] each) of ``memory`` m [B * S, C] (projected superpoint features, batch-major)
        and ``memory_pos`` e [B * S, C] (their Fourier position encoding)."""
        content = grouped_linear(memory, [proj for layer in layers
                                          for proj in (layer.ca_kcontent_proj, layer.ca_v_proj)])
        pos = grouped_linear(memory_pos, [layer.ca_kpos_proj for layer in layers])
        return list(zip(content[0::2], pos, content[1::2]))

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, query_sine: torch.Tensor,
                memory_proj: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], rel_idx: torch.Tensor,
                blocked: Optional[torch.Tensor]) -> torch.Tensor:
        """Update the content queries.

        The rows are the batch's queries scene after scene ([B * Q, C], not [B, Q, C]): a
        linear layer on a 2D input records no reshapes around its product, two autograd nodes
        fewer each in a backward whose host cost per node bounds it on the GPU.

        Args:
            queries: [B * Q, C] content queries; query_pos: [B * Q, C] their position
                embedding (MLP of ``query_sine``); query_sine: [B * Q, C] Fourier
                features of the query centres.
            memory_proj: this layer's entry of :meth:`project_memory`.
            rel_idx: int32/int64 [B, Q, S, 3] RPE bins; blocked: bool [B, Q, S] or None.

        Returns:
            [B * Q, C] updated queries.
        """
        B = rel_idx.shape[0]
        q_content, k_content, v = grouped_linear(queries, (self.sa_qcontent_proj, self.sa_kcontent_proj,
                                                           self.sa_v_proj))
        q_pos, k_pos = grouped_linear(query_pos, (self.sa_qpos_proj, self.sa_kpos_proj))
        q, k = q_content + q_pos, k_content + k_pos
        attended = self.self_attn(self._heads(q, B), self._heads(k, B), self._heads(v, B))
        queries = self.norm1(queries + attended)

        k_content, k_pos, v = memory_proj
        q_content = self.ca_qcontent_proj(queries)
        if self.ca_qpos_proj is not None:
            q_content = q_content + self.ca_qpos_proj(query_pos)
            k_content = k_content + k_pos
        q_content, k_content = self._heads(q_content, B), self._heads(k_content, B)
        q = torch.cat([q_content, self._heads(self.ca_qpos_sine_proj(query_sine), B)], dim=-1)
        k = torch.cat([k_content, self._heads(k_pos, B)], dim=-1)
        # MAFT scales the whole query before taking the RPE query bias from its content half.
        scaled_q_content = q_content * q.shape[-1] ** -0.5
        bias = (query_rpe_bias(scaled_q_content, self.relative_pos_query_table, rel_idx) +
                key_rpe_bias(k_content, self.relative_pos_key_table, rel_idx))
        if blocked is not None:
            # -inf added in place (the sum's backward keeps nothing), not masked_fill: no pass
            # in the backward, where softmax's gradient is 0 at blocked pairs anyway.
            blocked_bias = torch.zeros_like(blocked, dtype=bias.dtype).masked_fill_(blocked, float('-inf'))
            bias = bias.add_(blocked_bias[:, None])
        value_table = value_table_to_op_layout(self.relative_pos_value_table)
        attended = self.cross_attn(q, k, self._heads(v, B), logit_bias=bias,
                                   value_rpe=(rel_idx, value_table))
        queries = self.norm2(queries + attended)

        queries = self.norm3(queries + self.linear2(F.gelu(self.linear1(queries))))
        return queries
