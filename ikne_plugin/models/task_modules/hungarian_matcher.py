"""One-to-one matching of queries to ground-truth instances (MAFT's costs)."""
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from scipy.optimize import linear_sum_assignment

from .padded_batch import PaddedBatch

Match = Tuple[torch.Tensor, torch.Tensor]


@MODELS.register_module()
class HungarianMatcher:
    """Hungarian matching with MAFT's cost (maft/model/loss.py, ``HungarianMatcher``):

        C = cls_cost * (-p_class[gt label]) + mask_bce_cost * BCE + mask_dice_cost * Dice
            + center_cost * L1(predicted centre, GT centre),

    BCE averaged over the superpoints, Dice with +1 smoothing. The cost matrices of all
    layers and scenes are computed at once on the batch's padded tensors (``PaddedBatch``)
    and copied to the host in one transfer (a single synchronisation per call); scipy's
    ``linear_sum_assignment`` then solves each (layer, scene), and all matches go back
    to the device in one copy.
    """

    def __init__(self, cls_cost: float = 0.5, mask_bce_cost: float = 1.0, mask_dice_cost: float = 1.0,
                 center_cost: float = 0.5):
        self.cls_cost = cls_cost
        self.mask_bce_cost = mask_bce_cost
        self.mask_dice_cost = mask_dice_cost
        self.center_cost = center_cost

    def cost_matrices(self, batch: PaddedBatch) -> torch.Tensor:
        """Costs [B, L, Q, K] of every layer's queries against the GT of every scene (columns
        past a scene's GT count are padding). The padded superpoints (``PAD_LOGIT``, target 0)
        add nothing to the sums, so BCE is a mean over each scene's own superpoints."""
        labels = batch.gt_labels[:, None, None, :].expand(*batch.cls_logits.shape[:3], -1)
        cost_cls = -batch.cls_logits.softmax(-1).gather(-1, labels)
        logits, tgt = batch.mask_logits, batch.gt_masks
        # BCE(x, t) = softplus(x) - x t for t in {0, 1}: summed over the superpoints, a row sum
        # and one product (one softplus pass over the logits, not two).
        cost_bce = ((F.softplus(logits).sum(-1)[..., None] - torch.einsum('blqs,bks->blqk', logits, tgt)) /
                    batch.sp_counts[:, None, None, None])
        prob = logits.sigmoid()
        numerator = 2 * torch.einsum('blqs,bks->blqk', prob, tgt)
        denominator = prob.sum(-1)[..., None] + tgt.sum(-1)[:, None, None, :]
        cost_dice = 1 - (numerator + 1) / (denominator + 1)
        cost_center = (batch.centers[:, :, :, None, :] - batch.gt_centers[:, None, None, :, :]).abs().sum(-1)
        return (self.cls_cost * cost_cls + self.mask_bce_cost * cost_bce + self.mask_dice_cost * cost_dice +
                self.center_cost * cost_center)

    @torch.no_grad()
    def __call__(self, batch: PaddedBatch) -> List[List[Match]]:
        """Match every layer's queries to the GT instances of each scene.

        Returns:
            ``matches[layer][scene] = (query_idx, gt_idx)``, int64 tensors on the
            predictions' device (empty for a scene without GT instances).
        """
        device = batch.cls_logits.device
        num_layers = batch.cls_logits.shape[1]
        empty = torch.empty(0, dtype=torch.long, device=device)
        if sum(batch.gt_counts) == 0:
            return [[(empty, empty)] * len(batch.gt_counts) for _ in range(num_layers)]
        host = self.cost_matrices(batch).double().cpu().numpy()  # the one sync
        solved = []  # per (scene with GT, layer): (rows, cols)
        for b, num_gt in enumerate(batch.gt_counts):
            if num_gt == 0:
                continue
            cost = host[b, :, :, :num_gt]
            if not np.isfinite(cost).all():
                raise ValueError(f'HungarianMatcher: scene {b} has non-finite matching costs '
                                 '(NaN/inf in the predictions or GT centres)')
            solved += [linear_sum_assignment(layer_cost) for layer_cost in cost]
        # All matches go back in one copy, not waiting for the GPU's queue (non_blocking).
        pairs = np.concatenate([np.stack(p) for p in solved], 1).astype(np.int64)
        pieces = iter(torch.from_numpy(pairs).to(device, non_blocking=True).split([len(r) for r, _ in solved], 1))
        per_scene = [[tuple(next(pieces)) for _ in range(num_layers)] if num_gt else [(empty, empty)] * num_layers
                     for num_gt in batch.gt_counts]
        return [[per_scene[b][i] for b in range(len(per_scene))] for i in range(num_layers)]
