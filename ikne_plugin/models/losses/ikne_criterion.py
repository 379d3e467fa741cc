"""Instance losses of the IKNE heads: matched set losses on every layer (transformer) or the one
kernel layer (kernel head), + IKA/ISG."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import nn

from .instance_similarity import assign_by_mask_iou
from .mask_iou import pairwise_mask_iou


def _dice_loss(mask_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over masks of 1 - (2 |p t| + 1) / (|p| + |t| + 1), p = sigmoid (MAFT's +1 smoothing)."""
    prob = mask_logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).mean()


def _box_loss(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Mean over boxes of L1 (summed over the 6 coordinates) + 1 - IoU, axis-aligned boxes
    given as (min xyz, max xyz)."""
    inter = (torch.minimum(boxes[:, 3:], gt_boxes[:, 3:]) -
             torch.maximum(boxes[:, :3], gt_boxes[:, :3])).clamp_min(0).prod(-1)
    volume = (boxes[:, 3:] - boxes[:, :3]).clamp_min(0).prod(-1)
    gt_volume = (gt_boxes[:, 3:] - gt_boxes[:, :3]).prod(-1)
    iou = inter / (volume + gt_volume - inter).clamp_min(1e-12)
    return ((boxes - gt_boxes).abs().sum(-1) + 1 - iou).mean()


def _float32(preds):
    """``preds`` (nested dicts and lists of tensors) with float16/bfloat16 tensors in float32."""
    if isinstance(preds, torch.Tensor):
        return preds.float() if preds.dtype in (torch.float16, torch.bfloat16) else preds
    if isinstance(preds, dict):
        return {k: _float32(v) for k, v in preds.items()}
    if isinstance(preds, (list, tuple)):
        return type(preds)(_float32(v) for v in preds)
    return preds


@MODELS.register_module()
class IKNECriterion(nn.Module):
    """MAFT's set criterion (maft/model/loss.py, ``Criterion``) plus IKNE's IKA/ISG losses.

    Per decoder layer, after Hungarian matching (``matcher``, one host sync for all
    layers): class CE with weight ``no_object_weight`` on the no-object class (mean
    weighted by class weight over all queries of the batch); mask BCE (mean over
    matched masks x superpoints) and Dice per scene, averaged over the batch; centre L1
    (summed over xyz, mean over the matched queries of the batch); score MSE against
    the IoU of the binarised mask with its GT, only where that IoU > ``score_iou_thr``,
    per scene, averaged over the batch. The auxiliary layers get the same loss; their
    keys are prefixed ``d{i}.``. A layer with ``boxes`` (the kernel head's) also gets a box
    loss (L1 + 1 - IoU against the GT ``boxes``, weight ``box_weight``). IKA/ISG (optional)
    act on the final layer's instance features (``queries``), with the assignment "GT of
    highest mask IoU >= ``assign_iou_thr``"; ISG takes the head's ``low_rank_queries`` as
    its low-rank features where given.

    A scene without GT instances has all queries no-object; its mask, centre and score
    terms are zero but stay in the graph.

    Reference quirks, kept switchable:
        ``average_last_dice`` (default True): MAFT forgets to divide the last layer's
        Dice loss by the batch size (its aux layers are divided); False reproduces it.
        MAFT's centre loss is NaN when no scene of the batch has a GT instance (mean of
        an empty tensor); here it is 0 (no switch: a NaN loss only stops training).
    """

    def __init__(self, num_classes: int = 18, matcher: Optional[dict] = None, cls_weight: float = 0.5,
                 mask_bce_weight: float = 1.0, mask_dice_weight: float = 1.0, center_weight: float = 0.5,
                 score_weight: float = 0.5, no_object_weight: float = 0.1, score_iou_thr: float = 0.5,
                 ika_loss: Optional[dict] = None, isg_loss: Optional[dict] = None, assign_iou_thr: float = 0.5,
                 average_last_dice: bool = True, box_weight: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = MODELS.build(matcher if matcher is not None else dict(type='HungarianMatcher'))
        self.cls_weight = cls_weight
        self.mask_bce_weight = mask_bce_weight
        self.mask_dice_weight = mask_dice_weight
        self.center_weight = center_weight
        self.score_weight = score_weight
        self.no_object_weight = no_object_weight
        self.score_iou_thr = score_iou_thr
        self.ika_loss = MODELS.build(ika_loss) if ika_loss is not None else None
        self.isg_loss = MODELS.build(isg_loss) if isg_loss is not None else None
        self.assign_iou_thr = assign_iou_thr
        self.average_last_dice = average_last_dice
        self.box_weight = box_weight

    def class_weights(self, like: torch.Tensor) -> torch.Tensor:
        """[1] * num_classes + [no_object_weight] (MAFT's ``criterion.class_weight``)."""
        # new_full and cat, not an item assignment, which copies the scalar to the device and waits
        return torch.cat([like.new_ones(self.num_classes), like.new_full((1, ), self.no_object_weight)])

    def layer_loss(self, layer: Dict, matches: Sequence, gts: Sequence, average_dice: bool = True
                   ) -> Dict[str, torch.Tensor]:
        """Weighted losses of one layer's predictions (see the class docstring)."""
        cls_logits, centers = layer['cls_logits'], layer['centers']
        batch_size = cls_logits.shape[0]
        tgt_class = torch.full(cls_logits.shape[:2], self.num_classes, dtype=torch.long, device=cls_logits.device)
        matched_centers, gt_centers, matched_boxes, gt_boxes = [], [], [], []
        # Zeros that keep every prediction in the graph (scenes without GT instances).
        mask_bce = mask_dice = sum(m.sum() for m in layer['mask_logits']) * 0
        score_loss = layer['scores'].sum() * 0
        for b, (gt, (query_idx, gt_idx)) in enumerate(zip(gts, matches)):
            if len(query_idx) == 0:
                continue
            tgt_class[b, query_idx] = gt.labels_3d[gt_idx]
            matched_centers.append(centers[b, query_idx])
            gt_centers.append(gt.centers[gt_idx].to(centers.dtype))
            if 'boxes' in layer:
                matched_boxes.append(layer['boxes'][b, query_idx])
                gt_boxes.append(gt.boxes[gt_idx].to(centers.dtype))
            pred_masks = layer['mask_logits'][b][query_idx]
            tgt_masks = gt.sp_masks[gt_idx].to(pred_masks.dtype)
            mask_bce = mask_bce + F.binary_cross_entropy_with_logits(pred_masks, tgt_masks)
            mask_dice = mask_dice + _dice_loss(pred_masks, tgt_masks)
            iou = pairwise_mask_iou(pred_masks, tgt_masks).diagonal()
            # MSE over the matches with IoU > thr (0 if none), written without a host sync.
            keep = (iou > self.score_iou_thr).to(iou.dtype)
            sq_err = (layer['scores'][b, query_idx, 0] - iou) ** 2
            score_loss = score_loss + (sq_err * keep).sum() / keep.sum().clamp_min(1)
        loss_cls = F.cross_entropy(cls_logits.flatten(0, 1), tgt_class.flatten(), self.class_weights(cls_logits))
        if matched_centers:
            loss_center = (torch.cat(matched_centers) - torch.cat(gt_centers)).abs().sum(-1).mean()
        else:
            loss_center = centers.sum() * 0
        losses = {}
        if 'boxes' in layer:
            loss_box = _box_loss(torch.cat(matched_boxes), torch.cat(gt_boxes)) if matched_boxes else \
                layer['boxes'].sum() * 0
            losses['loss_box'] = self.box_weight * loss_box
        return dict(
            losses,
            loss_cls=self.cls_weight * loss_cls,
            loss_mask_bce=self.mask_bce_weight * mask_bce / batch_size,
            loss_mask_dice=self.mask_dice_weight * (mask_dice / batch_size if average_dice else mask_dice),
            loss_center=self.center_weight * loss_center,
            loss_score=self.score_weight * score_loss / batch_size)

    def forward(self, preds: Dict, gts: Sequence) -> Dict[str, torch.Tensor]:
        """All weighted losses.

        Args:
            preds: the head's output: ``layers`` (per layer: ``cls_logits`` [B, Q, C+1],
                ``scores`` [B, Q, 1], ``centers`` [B, Q, 3], ``mask_logits`` list of
                [Q, S_b], optionally ``boxes`` [B, Q, 6]), ``queries`` [B, Q, D] (the
                instance features) and optionally ``low_rank_queries`` [B, Q, D].
            gts: per scene, ``labels_3d`` [K], ``sp_masks`` bool [K, S_b], ``centers`` [K, 3]
                (and ``boxes`` [K, 6] for a head that predicts boxes).
        """
        if len(gts) != preds['layers'][0]['cls_logits'].shape[0]:
            raise ValueError(f"got {len(gts)} GT scenes for a batch of {preds['layers'][0]['cls_logits'].shape[0]}")
        # Under autocast the head's outputs are float16/bfloat16, but matching costs and losses
        # sum over thousands of superpoints (float16 overflows past 65504 and counts mask
        # overlaps exactly only up to 2048, bfloat16 up to 256): float32, autocast off.
        with torch.autocast(preds['layers'][0]['cls_logits'].device.type, enabled=False):
            return self._losses(_float32(preds), gts)

    def _losses(self, preds: Dict, gts: Sequence) -> Dict[str, torch.Tensor]:
        """The losses of ``forward`` (autocast off, no half-precision inputs)."""
        layers = preds['layers']
        matches = self.matcher(layers, gts)
        losses = {}
        last = len(layers) - 1
        for i, (layer, layer_matches) in enumerate(zip(layers, matches)):
            layer_losses = self.layer_loss(layer, layer_matches, gts,
                                           average_dice=self.average_last_dice or i != last)
            prefix = '' if i == last else f'd{i}.'
            losses.update({prefix + k: v for k, v in layer_losses.items()})
        if self.ika_loss is not None or self.isg_loss is not None:
            features = list(preds['queries'])
            assignments = [
                assign_by_mask_iou(masks, gt.sp_masks, self.assign_iou_thr)
                for masks, gt in zip(layers[-1]['mask_logits'], gts)
            ]
            if self.ika_loss is not None:
                losses['loss_ika'] = self.ika_loss(features, assignments)
            if self.isg_loss is not None:
                low_rank = {'low_rank': list(preds['low_rank_queries'])} if 'low_rank_queries' in preds else {}
                losses['loss_isg'] = self.isg_loss(features, assignments, **low_rank)
        return losses
