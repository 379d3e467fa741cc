"""One-to-one matching of queries to ground-truth instances (MAFT's costs)."""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from scipy.optimize import linear_sum_assignment

Match = Tuple[torch.Tensor, torch.Tensor]


@MODELS.register_module()
class HungarianMatcher:
    """Hungarian matching with MAFT's cost (maft/model/loss.py, ``HungarianMatcher``):

        C = cls_cost * (-p_class[gt label]) + mask_bce_cost * BCE + mask_dice_cost * Dice
            + center_cost * L1(predicted centre, GT centre),

    BCE averaged over the superpoints, Dice with +1 smoothing. All cost matrices of all
    layers and scenes are computed on the predictions' device and copied to the host
    in one transfer (a single synchronisation per call); scipy's
    ``linear_sum_assignment`` then solves each (layer, scene), and all matches go back
    to the device in one copy.
    """

    def __init__(self, cls_cost: float = 0.5, mask_bce_cost: float = 1.0, mask_dice_cost: float = 1.0,
                 center_cost: float = 0.5):
        self.cls_cost = cls_cost
        self.mask_bce_cost = mask_bce_cost
        self.mask_dice_cost = mask_dice_cost
        self.center_cost = center_cost

    def cost_matrices(self, cls_logits: torch.Tensor, mask_logits: torch.Tensor, centers: torch.Tensor,
                      gt_labels: torch.Tensor, gt_masks: torch.Tensor, gt_centers: torch.Tensor) -> torch.Tensor:
        """Costs of one scene for a stack of L layers.

        cls_logits [L, Q, C+1], mask_logits [L, Q, S], centers [L, Q, 3];
        gt_labels [K], gt_masks [K, S], gt_centers [K, 3] -> [L, Q, K].
        """
        cost_cls = -cls_logits.softmax(-1)[..., gt_labels]
        tgt = gt_masks.to(mask_logits.dtype)
        # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x).
        cost_bce = (torch.einsum('lqs,ks->lqk', F.softplus(-mask_logits), tgt) +
                    torch.einsum('lqs,ks->lqk', F.softplus(mask_logits), 1 - tgt)) / mask_logits.shape[-1]
        prob = mask_logits.sigmoid()
        numerator = 2 * torch.einsum('lqs,ks->lqk', prob, tgt)
        denominator = prob.sum(-1)[..., None] + tgt.sum(-1)[None, None, :]
        cost_dice = 1 - (numerator + 1) / (denominator + 1)
        cost_center = (centers[:, :, None, :] - gt_centers.to(centers.dtype)[None, None]).abs().sum(-1)
        return (self.cls_cost * cost_cls + self.mask_bce_cost * cost_bce + self.mask_dice_cost * cost_dice +
                self.center_cost * cost_center)

    @torch.no_grad()
    def __call__(self, layers: Sequence[Dict], gts: Sequence) -> List[List[Match]]:
        """Match every layer's queries to the GT instances of each scene.

        Args:
            layers: per decoder layer, a dict with ``cls_logits`` [B, Q, C+1], ``centers``
                [B, Q, 3] and ``mask_logits`` (list of B tensors [Q, S_b]).
            gts: per scene, an object with ``labels_3d`` [K], ``sp_masks`` [K, S_b] and
                ``centers`` [K, 3].

        Returns:
            ``matches[layer][scene] = (query_idx, gt_idx)``, int64 tensors on the
            predictions' device (empty for a scene without GT instances).
        """
        device = layers[0]['cls_logits'].device
        empty = torch.empty(0, dtype=torch.long, device=device)
        costs, shapes = [], []
        for b, gt in enumerate(gts):
            num_gt = len(gt.labels_3d)
            if num_gt == 0:
                shapes.append(None)
                continue
            cost = self.cost_matrices(
                torch.stack([layer['cls_logits'][b] for layer in layers]),
                torch.stack([layer['mask_logits'][b] for layer in layers]),
                torch.stack([layer['centers'][b] for layer in layers]), gt.labels_3d, gt.sp_masks, gt.centers)
            costs.append(cost.flatten())
            shapes.append(cost.shape)
        host = torch.cat(costs).double().cpu().numpy() if costs else np.empty(0)  # the one sync
        solved, offset = [], 0  # per (scene with GT, layer): (rows, cols)
        for b, shape in enumerate(shapes):
            if shape is None:
                continue
            size = int(np.prod(shape))
            cost = host[offset:offset + size].reshape(shape)
            offset += size
            if not np.isfinite(cost).all():
                raise ValueError(f'HungarianMatcher: scene {b} has non-finite matching costs '
                                 '(NaN/inf in the predictions or GT centres)')
            solved += [linear_sum_assignment(layer_cost) for layer_cost in cost]
        # All matches go back in one copy, not waiting for the GPU's queue (non_blocking).
        if solved:
            pairs = np.concatenate([np.stack(p) for p in solved], 1).astype(np.int64)
            pairs = torch.from_numpy(pairs).to(device, non_blocking=True)
            pieces = iter(pairs.split([len(rows) for rows, _ in solved], 1))
        per_scene = [[(empty, empty)] * len(layers) if shape is None
                     else [tuple(next(pieces)) for _ in layers] for shape in shapes]
        return [[per_scene[b][i] for b in range(len(gts))] for i in range(len(layers))]
