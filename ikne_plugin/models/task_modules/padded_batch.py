"""A batch's per-scene predictions and GT as padded tensors, so that matching and losses run
once for the whole batch instead of once per scene (fewer launches, which bound the host)."""
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

# A mask logit whose sigmoid, softplus and BCE against 0 are exactly 0 in float32 and float64
# (and which is below 0, so never a predicted superpoint): padded superpoints add nothing to
# any sum over superpoints, so only a mean needs the scene's true superpoint count.
PAD_LOGIT = -1e4


def pad_scenes(tensors: Sequence[torch.Tensor], value: float = 0,
               shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Per-scene tensors of one rank as a ``[B, *shape]`` batch (default shape: the largest),
    each padded at the end of every dimension with ``value``."""
    shape = list(shape) if shape is not None else [max(sizes) for sizes in zip(*(t.shape for t in tensors))]
    return torch.stack([
        t if list(t.shape) == shape else
        F.pad(t, [p for d in reversed(range(t.dim())) for p in (0, shape[d] - t.shape[d])], value=value)
        for t in tensors])


class PaddedBatch(NamedTuple):
    """The predictions of every decoder layer and the GT of a batch of B scenes, L layers, Q
    queries, padded to the batch's most superpoints S and most GT instances K."""
    cls_logits: torch.Tensor  # [B, L, Q, C+1]
    scores: torch.Tensor  # [B, L, Q]
    centers: torch.Tensor  # [B, L, Q, 3]
    boxes: Optional[torch.Tensor]  # [B, L, Q, 6] for a head that predicts boxes
    mask_logits: torch.Tensor  # [B, L, Q, S], PAD_LOGIT on padded superpoints
    sp_counts: torch.Tensor  # [B] superpoints per scene, in the masks' dtype
    gt_labels: torch.Tensor  # int64 [B, K], 0 on padding
    gt_masks: torch.Tensor  # [B, K, S] 0/1 in the masks' dtype, 0 on padding
    gt_centers: torch.Tensor  # [B, K, 3]
    gt_boxes: Optional[torch.Tensor]  # [B, K, 6] where the predictions have boxes
    gt_counts: List[int]  # K per scene (on the host)

    @classmethod
    def build(cls, layers: Sequence[Dict], sp_counts: Sequence[int], gts: Sequence) -> 'PaddedBatch':
        """From the head's per-layer outputs (``cls_logits`` [B, Q, C+1], ``scores`` [B, Q, 1],
        ``centers`` [B, Q, 3], optionally ``boxes`` [B, Q, 6], ``mask_logits`` [B, Q, S] with
        PAD_LOGIT past each scene's superpoints), its ``sp_counts`` (host ints S_b) and per-scene
        GT (``labels_3d`` [K_b], ``sp_masks`` [K_b, S_b], ``centers`` [K_b, 3], with boxes
        ``boxes`` [K_b, 6])."""
        def stacked(key):
            return torch.stack([layer[key] for layer in layers], 1)

        for b, (count, gt) in enumerate(zip(sp_counts, gts)):
            if gt.sp_masks.shape[-1] != count:
                raise ValueError(f'scene {b}: GT sp_masks cover {gt.sp_masks.shape[-1]} superpoints, '
                                 f'the predicted masks {count}')
        masks = layers[0]['mask_logits']
        dtype, device = masks.dtype, masks.device
        has_boxes = 'boxes' in layers[0]
        gt_counts = [len(gt.labels_3d) for gt in gts]
        return cls(
            cls_logits=stacked('cls_logits'), scores=stacked('scores')[..., 0], centers=stacked('centers'),
            boxes=stacked('boxes') if has_boxes else None,
            mask_logits=stacked('mask_logits'),
            sp_counts=torch.tensor(sp_counts, dtype=dtype).to(device, non_blocking=True),
            gt_labels=pad_scenes([gt.labels_3d for gt in gts]),
            gt_masks=pad_scenes([gt.sp_masks.to(dtype) for gt in gts], shape=(max(gt_counts), masks.shape[-1])),
            gt_centers=pad_scenes([gt.centers.to(dtype) for gt in gts]),
            gt_boxes=pad_scenes([gt.boxes.to(dtype) for gt in gts]) if has_boxes else None,
            gt_counts=gt_counts)
