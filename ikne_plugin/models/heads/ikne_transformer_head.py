"""IKNE's transformer head: MAFT's mask-attention-free query decoder over superpoints."""
import contextlib
from typing import Dict, List, Optional, Sequence

import torch
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import nn
from torch.utils._pytree import tree_map

from ..layers import MLP, FourierPositionEncoding, QueryDecoderLayer, relative_position_bins
from ..task_modules.padded_batch import PAD_LOGIT

def _mlp_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """Linear-ReLU-Linear (MAFT's ``out_cls``/``out_score``/``out_bbox`` layout)."""
    return nn.Sequential(nn.Linear(in_channels, in_channels), nn.ReLU(), nn.Linear(in_channels, out_channels))


class DecoderGraph:
    """A CUDA graph of ``decode(*inputs)`` for inputs of fixed sizes: ``graph(*inputs)``
    copies the inputs into the graph's own, replays it and returns a copy of its outputs.
    Autocast's cast cache is off inside (cached casts would live outside the graph). Graphs
    sharing a memory ``pool`` must not replay concurrently (only their outputs are kept)."""

    def __init__(self, decode, inputs, amp_dtype, pool=None):
        self.inputs = [t.clone() for t in inputs]
        precision = (torch.autocast('cuda', dtype=amp_dtype, cache_enabled=False) if amp_dtype
                     else contextlib.nullcontext())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), precision:  # warm-up off the capture (cuBLAS set-up and the like)
            decode(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph, pool=pool), precision:
                self.outputs = decode(*self.inputs)
        except RuntimeError as error:
            raise RuntimeError(f'capturing the decoder as a CUDA graph failed ({error}); set '
                               'model.head.cuda_graph=False (e.g. --cfg-options '
                               'model.head.cuda_graph=False) to run it eagerly') from error

    def __call__(self, *inputs):
        for mine, given in zip(self.inputs, inputs):
            mine.copy_(given)
        self.graph.replay()
        return tree_map(lambda t: t.clone(), self.outputs)


@MODELS.register_module()
class IKNETransformerHead(BaseModule):
    """Query decoder of MAFT (ICCV 2023), which IKNE uses unchanged, with its criterion.

    ``num_queries`` learnable reference points (sigmoid of an embedding, in the unit
    cube of each scene's superpoint-centroid bounding box) and zero content queries go
    through ``num_layers`` :class:`QueryDecoderLayer` blocks attending to the
    superpoints. After each layer the normalised queries give class logits
    (``num_classes`` + no-object), a raw score, a centre (reference point in metres +
    offset) and mask logits over the superpoints (dot product with projected superpoint
    features), all through heads shared across layers; the masks give the next layer's
    attention mask (sigmoid < ``attn_mask_thr`` blocked; a fully blocked row is
    unblocked) and an MLP refines the reference points (the new point is used detached,
    as in MAFT). Semantics follow maft/model/query_decoder.py and transformer.py.

    Args:
        in_channels: superpoint feature channels.
        num_classes: instance classes (without no-object).
        num_queries, num_layers, d_model, num_heads, ffn_dim: decoder sizes.
        rpe_num_bins, rpe_bin_size: contextual RPE bins per axis and their width (m).
        attn_mask_thr: attention-mask threshold on the mask probability.
        criterion: config of the training criterion (``IKNECriterion``).
        topk, score_thr, min_points: inference; keep the ``topk`` best (query, class)
            pairs, then masks with score > ``score_thr`` and more than ``min_points`` points.
        cuda_graph: in inference on CUDA (eval mode, no gradient), replay the decoder as a
            CUDA graph, one per batch size and superpoint count rounded up to
            ``graph_bucket`` (the padding is blocked in the attention, as a batch's is):
            the decoder's hundreds of small kernels then cost one launch. Its outputs match
            the eager decoder's up to float rounding.
        compile_decoder: keyword arguments of ``torch.compile`` (e.g. ``dict(mode=
            'reduce-overhead')``) to run the decoder compiled wherever the CUDA graphs above do
            not: in training, forward and backward. None (default): eager. Superpoint counts
            are then padded to ``graph_bucket`` too, which bounds the shapes it compiles for.
        graph_bucket: superpoint counts are padded to a multiple of this for the graphs.

    Dropout is not supported: MAFT's configuration uses 0.
    """

    def __init__(self, in_channels: int = 32, num_classes: int = 18, num_queries: int = 400, num_layers: int = 6,
                 d_model: int = 256, num_heads: int = 8, ffn_dim: int = 1024, rpe_num_bins: int = 48,
                 rpe_bin_size: float = 0.1, attn_mask_thr: float = 0.1, criterion: Optional[dict] = None,
                 topk: int = 100, score_thr: float = 0.0, min_points: int = 100, cuda_graph: bool = False,
                 compile_decoder: Optional[dict] = None, graph_bucket: int = 256, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if rpe_num_bins % 2:
            raise ValueError(f'rpe_num_bins must be even, got {rpe_num_bins}')
        self.num_classes = num_classes
        self.rpe_num_bins = rpe_num_bins
        self.rpe_bin_size = rpe_bin_size
        self.attn_mask_thr = attn_mask_thr
        self.topk = topk
        self.score_thr = score_thr
        self.min_points = min_points
        self.cuda_graph = cuda_graph
        self.compile_decoder = compile_decoder
        self._compiled_decode = None  # torch.compile's wrapper of _decode, made at first use
        self.graph_bucket = graph_bucket
        self._graphs = {}  # (batch, padded superpoints, dtype, autocast dtype) -> DecoderGraph

        self.input_proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.LayerNorm(d_model), nn.ReLU())
        self.mask_feat_proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.query_ref_points = nn.Embedding(num_queries, 3)
        self.key_pos_encoding = FourierPositionEncoding(d_model)
        self.query_pos_encoding = FourierPositionEncoding(d_model)
        self.query_pos_mlp = MLP(d_model, d_model, d_model, 2)
        self.layers = nn.ModuleList(
            QueryDecoderLayer(d_model, num_heads, ffn_dim, rpe_num_bins, first_layer=i == 0)
            for i in range(num_layers))
        self.output_norm = nn.LayerNorm(d_model)
        self.center_refine_mlp = MLP(d_model, d_model, 3, 3)
        self.cls_head = _mlp_head(d_model, num_classes + 1)
        self.score_head = _mlp_head(d_model, 1)
        self.center_head = _mlp_head(d_model, 3)
        self.criterion = MODELS.build(criterion) if criterion is not None else None
        self._reset_parameters()

    def _reset_parameters(self):
        """MAFT's initialisation: Xavier-uniform for every matrix/table of the decoder
        layers and the query position MLP, zero attention output biases, zero last
        layers of the centre refinement MLP and of the centre head."""
        for module in (self.layers, self.query_pos_mlp):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for layer in self.layers:
            nn.init.zeros_(layer.self_attn.out_proj.bias)
            nn.init.zeros_(layer.cross_attn.out_proj.bias)
        for last in (self.center_refine_mlp.layers[-1], self.center_head[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: Dict) -> Dict:
        """Decode the superpoints of a batch of scenes.

        Args:
            x: per-scene lists ``sp_feats`` ([S_i, in_channels] superpoint features) and
                ``sp_xyz`` ([S_i, 3] superpoint centroids, metres); other keys unused.

        Returns:
            dict with ``layers``: per decoder layer a dict of ``cls_logits`` [B, Q, C+1],
            ``scores`` [B, Q, 1], ``centers`` [B, Q, 3] (metres) and ``mask_logits``
            [B, Q, max S_i] (PAD_LOGIT past scene i's S_i); ``sp_counts``, the S_i (host
            ints); and ``queries`` [B, Q, d_model], the final normalised queries (IKNE's
            instance features).
        """
        sp_feats, sp_xyz = x['sp_feats'], x['sp_xyz']
        if len(sp_feats) != len(sp_xyz) or len(sp_feats) == 0:
            raise ValueError(f'expected equally long non-empty lists of sp_feats and sp_xyz, '
                             f'got {len(sp_feats)} and {len(sp_xyz)}')
        lengths = [f.shape[0] for f in sp_feats]
        for i, (feat, coord) in enumerate(zip(sp_feats, sp_xyz)):
            if feat.shape[0] == 0 or coord.shape != (feat.shape[0], 3):
                raise ValueError(f'scene {i}: expected sp_feats [S, C] with S >= 1 and sp_xyz [S, 3], '
                                 f'got {tuple(feat.shape)} and {tuple(coord.shape)}')
        graphed = (self.cuda_graph and not self.training and not torch.is_grad_enabled()
                   and sp_feats[0].is_cuda)
        compiled = self.compile_decoder is not None and not graphed
        bucket = self.graph_bucket if graphed or compiled else 1
        padded_length = -(-max(lengths) // bucket) * bucket
        feats = torch.stack([nn.functional.pad(f, (0, 0, 0, padded_length - len(f))) for f in sp_feats])
        xyz = torch.stack([nn.functional.pad(c, (0, 0, 0, padded_length - len(c))) for c in sp_xyz])
        # [B, S], True = padded; non_blocking: a copy from pageable memory that does not wait for the GPU
        padding = torch.arange(padded_length, device=feats.device)[None] >= torch.tensor(lengths).to(
            feats.device, non_blocking=True)[:, None]
        xyz_min = torch.stack([c.min(0)[0] for c in sp_xyz])[:, None]  # [B, 1, 3]
        xyz_max = torch.stack([c.max(0)[0] for c in sp_xyz])[:, None]
        inputs = (feats, xyz.to(feats.dtype), padding, xyz_min.to(feats.dtype), xyz_max.to(feats.dtype))
        if graphed:
            layers, normed = self._graph(inputs)(*inputs)
        elif compiled:
            if self._compiled_decode is None:  # (unbound, so that a copy of the head can share it)
                self._compiled_decode = torch.compile(type(self)._decode, **self.compile_decoder)
            layers, normed = self._compiled_decode(self, *inputs)
        else:
            layers, normed = self._decode(*inputs)
        # One padded tensor per layer (no per-scene slices, whose backward each fills a whole
        # gradient): PAD_LOGIT on each scene's padding, the bucket's padding past all scenes cut.
        num_sp = max(lengths)
        pad = padding[:, None, :num_sp]
        for layer in layers:
            mask_logits = layer['mask_logits']
            if padded_length > num_sp:
                mask_logits = mask_logits[..., :num_sp]
            layer['mask_logits'] = mask_logits.masked_fill(pad, PAD_LOGIT)
        return dict(layers=layers, sp_counts=lengths, queries=normed)

    def _decode(self, feats: torch.Tensor, xyz: torch.Tensor, padding: torch.Tensor, xyz_min: torch.Tensor,
                xyz_max: torch.Tensor):
        """The decoder on padded scenes: feats [B, S, C], xyz [B, S, 3], padding bool [B, S],
        xyz_min/xyz_max [B, 1, 3] of the real superpoints. Returns (per-layer output dicts with
        mask_logits [B, Q, S], final normalised queries). No host synchronisation."""
        # Per-query and per-superpoint tensors are 2D, their rows scene after scene ([B * Q, C],
        # [B * S, C]): linear layers on them record no reshapes for the backward.
        B, S = feats.shape[:2]
        extent = (xyz_max - xyz_min).clamp_min(1e-6)  # a single superpoint has no extent
        flat_feats = feats.flatten(0, 1)
        memory = self.input_proj(flat_feats)
        mask_feats = self.mask_feat_proj(flat_feats).view(B, S, -1)
        memory_proj = QueryDecoderLayer.project_memory(
            self.layers, memory, self.key_pos_encoding((xyz - xyz_min) / extent).flatten(0, 1))
        ref = self.query_ref_points.weight.to(feats.dtype).sigmoid()[None].expand(B, -1, -1)  # [B, Q, 3]
        Q = ref.shape[1]
        queries = feats.new_zeros(B * Q, memory.shape[-1])
        blocked = padding[:, None, :].expand(-1, Q, -1)
        # ref: reference points in the unit cube, with gradient (the centres are predicted from
        # them); ref_in: the layer's input point, detached from the second layer on (as MAFT).
        ref_in = ref
        normeds, refs, masks = [], [], []
        for i, (layer, layer_memory) in enumerate(zip(self.layers, memory_proj)):
            query_sine = self.query_pos_encoding(ref_in).flatten(0, 1)
            centers_in = ref_in * extent + xyz_min
            rel_idx = relative_position_bins(centers_in, xyz, self.rpe_num_bins, self.rpe_bin_size)
            queries = layer(queries, self.query_pos_mlp(query_sine), query_sine, layer_memory, rel_idx, blocked)
            normed = self.output_norm(queries)
            mask_logits = torch.bmm(normed.view(B, Q, -1), mask_feats.transpose(1, 2))  # [B, Q, S]
            normeds.append(normed)
            refs.append(ref)
            masks.append(mask_logits)
            if i == len(self.layers) - 1:
                break
            blocked = self._attention_block_mask(mask_logits.detach(), padding)
            # Same arithmetic as MAFT (metres, then back to the unit cube) for parity.
            ref = (centers_in + self.center_refine_mlp(normed).view(B, Q, 3) - xyz_min) / extent
            ref_in = ref.detach()
        # The output heads, which the next layer does not need, once over all layers: fewer and
        # larger launches, forward and backward.
        stacked = torch.cat(normeds)  # [L * B * Q, C]
        L = len(normeds)
        cls_logits = self.cls_head(stacked).view(L, B, Q, -1)
        scores = self.score_head(stacked).view(L, B, Q, 1)
        centers = torch.stack(refs) * extent + xyz_min + self.center_head(stacked).view(L, B, Q, 3)
        layers = [dict(cls_logits=c, scores=s, centers=x, mask_logits=m)
                  for c, s, x, m in zip(cls_logits.unbind(), scores.unbind(), centers.unbind(), masks)]
        return layers, normed.view(B, Q, -1)

    def _graph(self, inputs):
        """The ``DecoderGraph`` of these inputs' sizes and precision (captured at first use)."""
        amp_dtype = torch.get_autocast_dtype('cuda') if torch.is_autocast_enabled('cuda') else None
        key = (*inputs[0].shape, inputs[0].dtype, amp_dtype)
        if key not in self._graphs:
            pool = next(iter(self._graphs.values())).graph.pool() if self._graphs else None
            self._graphs[key] = DecoderGraph(self._decode, inputs, amp_dtype, pool)
        return self._graphs[key]

    def _apply(self, fn, *args, **kwargs):
        self._graphs.clear()  # the graphs hold the addresses of the parameters, which this replaces
        return super()._apply(fn, *args, **kwargs)

    def _attention_block_mask(self, mask_logits: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """bool [B, Q, S]: superpoints of mask probability < thr and padding are blocked;
        a query that would block every superpoint of its scene is unblocked."""
        blocked = (mask_logits.sigmoid() < self.attn_mask_thr) | padding[:, None, :]
        all_blocked = blocked.all(dim=-1, keepdim=True)
        return torch.where(all_blocked, padding[:, None, :], blocked)

    def loss(self, x: Dict, batch_data_samples: Sequence) -> Dict[str, torch.Tensor]:
        """Losses of a batch (``x``: per-scene lists ``sp_feats``, ``sp_xyz``; GT from
        ``data_sample.gt_instances_3d``: ``labels_3d``, ``sp_masks``, ``centers``)."""
        if self.criterion is None:
            raise ValueError('IKNETransformerHead.loss needs a criterion in the head config')
        preds = self(x)
        return self.criterion(preds, [ds.gt_instances_3d for ds in batch_data_samples])

    def predict(self, x: Dict, batch_data_samples: Sequence) -> List[InstanceData]:
        """Per-point instances of each scene (MAFT's inference, no NMS).

        Returns per scene an ``InstanceData`` with ``pts_instance_mask`` bool [K, N_i],
        ``instance_labels`` int64 [K] (0..num_classes-1) and ``instance_scores`` [K].
        """
        out = self(x)
        last = out['layers'][-1]
        return [
            self._predict_scene(last['cls_logits'][b], last['scores'][b], last['mask_logits'][b, :, :n], sp_ids)
            for b, (n, sp_ids) in enumerate(zip(out['sp_counts'], x['sp_ids']))
        ]

    def _predict_scene(self, cls_logits: torch.Tensor, scores: torch.Tensor, mask_logits: torch.Tensor,
                       sp_ids: torch.Tensor) -> InstanceData:
        """Top-k (query, class) pairs scored by class probability x score head x mean
        mask probability; masks (logit > 0) mapped to points through ``sp_ids``."""
        pair_scores = (cls_logits.softmax(-1)[:, :-1] * scores).flatten()  # [Q * C]
        pair_scores, pair_idx = pair_scores.topk(min(self.topk, pair_scores.numel()))
        labels = pair_idx % self.num_classes
        mask_logits = mask_logits[torch.div(pair_idx, self.num_classes, rounding_mode='floor')]
        masks = mask_logits > 0
        mask_prob = (mask_logits.sigmoid() * masks).sum(-1) / (masks.sum(-1) + 1e-6)
        pair_scores = pair_scores * mask_prob
        point_masks = masks[:, sp_ids]
        keep = (pair_scores > self.score_thr) & (point_masks.sum(-1) > self.min_points)
        return InstanceData(pts_instance_mask=point_masks[keep], instance_labels=labels[keep],
                            instance_scores=pair_scores[keep])
