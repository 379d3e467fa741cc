"""Instance losses of the IKNE heads: matched set losses on every layer (transformer) or the one
kernel layer (kernel head), + IKA/ISG."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import nn

from ikne_plugin.models.task_modules.padded_batch import PaddedBatch
from ikne_plugin.utils.background_call import BackgroundCall
from .instance_similarity import assign_by_mask_iou


def _dice_terms(mask_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per mask, 1 - (2 |p t| + 1) / (|p| + |t| + 1), p = sigmoid (MAFT's +1 smoothing)."""
    prob = mask_logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def _box_terms(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Per box, L1 (summed over the 6 coordinates) + 1 - IoU, axis-aligned boxes given as
    (min xyz, max xyz)."""
    inter = (torch.minimum(boxes[:, 3:], gt_boxes[:, 3:]) -
             torch.maximum(boxes[:, :3], gt_boxes[:, :3])).clamp_min(0).prod(-1)
    volume = (boxes[:, 3:] - boxes[:, :3]).clamp_min(0).prod(-1)
    gt_volume = (gt_boxes[:, 3:] - gt_boxes[:, :3]).prod(-1)
    iou = inter / (volume + gt_volume - inter).clamp_min(1e-12)
    return (boxes - gt_boxes).abs().sum(-1) + 1 - iou


@torch.no_grad()
def _rowwise_mask_iou(mask_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of each binarised predicted mask with its own target: the diagonal of
    ``pairwise_mask_iou`` without the off-diagonal products."""
    pred = (mask_logits >= 0).to(mask_logits.dtype)
    gt = (targets > 0.5).to(mask_logits.dtype)
    inter = (pred * gt).sum(-1)
    return inter / (pred.sum(-1) + gt.sum(-1) - inter).clamp_min(1)


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
        if not 0 < assign_iou_thr <= 1:  # 0 would assign queries to GT they do not overlap at all
            raise ValueError(f'assign_iou_thr must be in (0, 1], got {assign_iou_thr}')
        self.assign_iou_thr = assign_iou_thr
        self.average_last_dice = average_last_dice
        self.box_weight = box_weight

    def class_weights(self, like: torch.Tensor) -> torch.Tensor:
        """[1] * num_classes + [no_object_weight] (MAFT's ``criterion.class_weight``)."""
        # new_full and cat, not an item assignment, which copies the scalar to the device and waits
        return torch.cat([like.new_ones(self.num_classes), like.new_full((1, ), self.no_object_weight)])

    def set_losses(self, batch: PaddedBatch, matches: Sequence) -> List[Dict[str, torch.Tensor]]:
        """Weighted matched losses of every layer (see the class docstring), computed for all
        layers and scenes at once on the batch's padded tensors: the matches of all (scene,
        layer) pairs form one table, each term takes one pass over it, and per-(scene, layer)
        sums come from ``index_add``. So the launches grow with neither the layers nor the
        scenes, and nothing waits for the GPU."""
        batch_size, num_layers, num_queries = batch.cls_logits.shape[:3]
        num_gt = batch.gt_labels.shape[1]
        device = batch.cls_logits.device
        # The match table; key = scene * L + layer.
        counts = torch.tensor([[len(matches[i][b][0]) for i in range(num_layers)]
                               for b in range(batch_size)])  # host [B, L]: matches per (scene, layer)
        query = torch.cat([matches[i][b][0] for b in range(batch_size) for i in range(num_layers)]).to(device)
        gt_idx = torch.cat([matches[i][b][1] for b in range(batch_size) for i in range(num_layers)]).to(device)
        key = torch.repeat_interleave(torch.arange(batch_size * num_layers, device=device),
                                      counts.flatten().to(device, non_blocking=True), output_size=int(counts.sum()))
        match_counts = counts.to(device, non_blocking=True)
        scene, layer_of = key // num_layers, key % num_layers
        row = key * num_queries + query  # into [B, L, Q] flattened
        gt_row = scene * num_gt + gt_idx  # into [B, K] flattened
        # 0 x every prediction: keeps each one in the graph (scenes without GT instances)
        keep_graph = (batch.scores.sum() + batch.centers.sum() + batch.mask_logits.sum() +
                      (batch.boxes.sum() if batch.boxes is not None else 0)) * 0

        # class: weighted CE over all queries, per layer
        tgt_class = torch.full((batch_size * num_layers * num_queries, ), self.num_classes, dtype=torch.long,
                               device=device).index_put((row, ), batch.gt_labels.flatten()[gt_row])
        weights = self.class_weights(batch.cls_logits)
        ce = F.cross_entropy(batch.cls_logits.flatten(0, 2), tgt_class, weights, reduction='none')
        loss_cls = (ce.view(batch_size, num_layers, -1).sum((0, 2)) /
                    weights[tgt_class].view(batch_size, num_layers, -1).sum((0, 2)))

        # centre (and box): L1 over the matches of the batch, per layer
        def layer_mean(values):
            return values.new_zeros(num_layers).index_add(0, layer_of, values) / match_counts.sum(0).clamp_min(1)

        loss_center = layer_mean((batch.centers.view(-1, 3)[row] - batch.gt_centers.view(-1, 3)[gt_row]).abs().sum(-1))
        loss_center = loss_center + keep_graph
        loss_box = None
        if batch.boxes is not None:
            loss_box = layer_mean(_box_terms(batch.boxes.view(-1, 6)[row], batch.gt_boxes.view(-1, 6)[gt_row]))
            loss_box = loss_box + keep_graph

        # masks: per-match BCE (a mean over the scene's own superpoints), Dice, IoU -> score error
        pred = batch.mask_logits.flatten(0, 2)[row]  # [M, S]; padded superpoints add 0 to every sum
        tgt = batch.gt_masks.flatten(0, 1)[gt_row]
        bce = F.binary_cross_entropy_with_logits(pred, tgt, reduction='none').sum(-1) / batch.sp_counts[scene]
        iou = _rowwise_mask_iou(pred, tgt)
        keep = (iou > self.score_iou_thr).to(iou.dtype)
        sq_err = (batch.scores.flatten()[row] - iou) ** 2
        per_match = torch.stack([bce, _dice_terms(pred, tgt), sq_err * keep, keep], -1)
        sums = per_match.new_zeros(batch_size * num_layers, 4).index_add(0, key, per_match)
        sums = sums.view(batch_size, num_layers, 4)
        # per (scene, layer): mean over its matches (0 without any); then summed over the scenes
        mask_bce = (sums[..., 0] / match_counts.clamp_min(1)).sum(0) + keep_graph
        mask_dice = (sums[..., 1] / match_counts.clamp_min(1)).sum(0) + keep_graph
        score_loss = (sums[..., 2] / sums[..., 3].clamp_min(1)).sum(0) + keep_graph

        # Weighted per-layer terms; the scalars come out of one stacked tensor (one backward node
        # and kernel, not a select, a multiply and a divide per term and layer).
        dice_scale = [1 / batch_size] * (num_layers - 1) + [1 / batch_size if self.average_last_dice else 1]
        terms = dict(loss_box=self.box_weight * loss_box) if loss_box is not None else {}
        terms.update(
            loss_cls=self.cls_weight * loss_cls,
            loss_mask_bce=mask_bce * (self.mask_bce_weight / batch_size),
            loss_mask_dice=mask_dice * torch.tensor(dice_scale, dtype=mask_dice.dtype).mul_(
                self.mask_dice_weight).to(device, non_blocking=True),
            loss_center=self.center_weight * loss_center,
            loss_score=score_loss * (self.score_weight / batch_size))
        scalars = torch.stack(list(terms.values()), 1).flatten().unbind()  # layer-major
        return [dict(zip(terms, scalars[i * len(terms):(i + 1) * len(terms)])) for i in range(num_layers)]

    def forward(self, preds: Dict, gts: Sequence) -> Dict[str, torch.Tensor]:
        """All weighted losses.

        Args:
            preds: the head's output: ``layers`` (per layer: ``cls_logits`` [B, Q, C+1],
                ``scores`` [B, Q, 1], ``centers`` [B, Q, 3], ``mask_logits`` [B, Q, S]
                with PAD_LOGIT past each scene's S_b, optionally ``boxes`` [B, Q, 6]),
                ``sp_counts`` (the S_b, host ints), ``queries`` [B, Q, D] (the instance
                features) and optionally ``low_rank_queries`` [B, Q, D].
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
        """The losses of ``forward`` (autocast off, no half-precision inputs). IKA and ISG need no
        matches, so they are queued before the matcher's host synchronisation, which the host
        would otherwise spend idle; ISG's eigendecomposition, which waits for the GPU, runs in the
        background (:class:`BackgroundCall`) until the set losses are queued."""
        layers = preds['layers']
        batch = PaddedBatch.build(layers, preds['sp_counts'], gts)
        ika = isg = None
        if self.ika_loss is not None or self.isg_loss is not None:
            features = list(preds['queries'])
            assignments = list(assign_by_mask_iou(batch.mask_logits[:, -1], batch.gt_masks, self.assign_iou_thr))
            if self.isg_loss is not None:
                low_rank = {'low_rank': list(preds['low_rank_queries'])} if 'low_rank_queries' in preds else {}
                isg = BackgroundCall(preds['queries'].device, self.isg_loss, features, assignments, **low_rank)
            if self.ika_loss is not None:
                ika = self.ika_loss(features, assignments)
        matches = self.matcher(batch)
        losses = {}
        last = len(layers) - 1
        for i, layer_losses in enumerate(self.set_losses(batch, matches)):
            prefix = '' if i == last else f'd{i}.'
            losses.update({prefix + k: v for k, v in layer_losses.items()})
        if ika is not None:
            losses['loss_ika'] = ika
        if isg is not None:
            losses['loss_isg'] = isg.result()
        return losses
