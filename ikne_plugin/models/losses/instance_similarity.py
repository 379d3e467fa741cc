"""Shared core of IKNE's instance-feature losses (IKA, ISG): similarity, target, loss.

A loss of this family takes the instance features of every scene (``[Nq, D]`` each:
the transformer head's final queries, or the kernel head's instance features) and the
query -> GT-instance assignment of each scene, builds a similarity matrix S (``[Nq, Nq]``,
defined by the subclass), min-max normalises it to [0, 1] and supervises it with a
binary target T:

    loss = sum_{T = 1} (S - 1)^2 + off_target_weight * sum_{T = 0} S^2,

summed over the scenes of the batch and multiplied by ``loss_weight``. With the identity
target and ``normalize='batch'`` this is exactly the released IKNE code
(kuai-lab/cvpr25_IKNE, ikne/model/query_decoder.py and ikne.py: a Barlow-Twins form with
off-diagonal weight 0.0051, loss weight 0.001, summed over scenes).
"""
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ikne_plugin.models.task_modules.padded_batch import pad_scenes
from .mask_iou import pairwise_mask_iou

TARGETS = ('same_instance', 'identity')
NORMALIZE_SCOPES = ('scene', 'batch')


@torch.no_grad()
def assign_by_mask_iou(mask_logits: torch.Tensor, gt_masks: torch.Tensor,
                       iou_thr: float = 0.5) -> torch.Tensor:
    """GT instance of highest mask IoU per query, or -1 where that IoU < ``iou_thr``.

    mask_logits: [..., Q, S]; gt_masks: [..., K, S] -> int64 [..., Q]. An empty GT mask (a
    scene's padding in a batch) has IoU 0 with every query: never assigned if ``iou_thr`` > 0.
    """
    assignment = torch.full(mask_logits.shape[:-1], -1, dtype=torch.long, device=mask_logits.device)
    if gt_masks.shape[-2] == 0:
        return assignment
    best_iou, best_gt = pairwise_mask_iou(mask_logits, gt_masks).max(dim=-1)
    return torch.where(best_iou >= iou_thr, best_gt, assignment)


def similarity_target(assignment: torch.Tensor, kind: str) -> torch.Tensor:
    """Binary target ``[..., N, N]`` of assignments ``[..., N]``: 1 on the diagonal, and
    (``same_instance``) where queries i and j are assigned to the same GT instance (>= 0)."""
    eye = torch.eye(assignment.shape[-1], dtype=torch.bool, device=assignment.device)
    if kind == 'identity':
        return eye.expand(*assignment.shape, assignment.shape[-1])
    row, col = assignment[..., :, None], assignment[..., None, :]
    return ((row == col) & (row >= 0)) | eye


def minmax_normalize(sim: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(S - low) / (high - low), guarded against a constant S."""
    return (sim - low) / (high - low).clamp_min(1e-12)


def masked_range(sim: torch.Tensor, valid: torch.Tensor, dims) -> Tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of ``sim`` over its ``valid`` entries along ``dims`` (kept as size 1);
    (0, 1) where there is none, so that an empty scene stays finite, gradients included."""
    low = torch.where(valid, sim, torch.inf).amin(dims, keepdim=True)
    high = torch.where(valid, sim, -torch.inf).amax(dims, keepdim=True)
    empty = ~valid.any(dim=dims, keepdim=True)
    return low.masked_fill(empty, 0), high.masked_fill(empty, 1)


def weighted_target_loss(sim: torch.Tensor, target: torch.Tensor, off_target_weight: float,
                         valid: torch.Tensor) -> torch.Tensor:
    """sum over valid T = 1 of (S - 1)^2 + off_target_weight * sum over valid T = 0 of S^2."""
    sq = (sim - target.to(sim.dtype)) ** 2
    # where() rather than boolean indexing, which waits for the GPU to count the selection
    return (torch.where(target & valid, sq, 0).sum() +
            off_target_weight * torch.where(~target & valid, sq, 0).sum())


class InstanceSimilarityLoss(nn.Module):
    """Base of IKA / ISG: subclasses define ``similarity(features [B, N, D]) -> [B, N, N]``.

    Args:
        target: ``'same_instance'`` (default; queries assigned to the same GT instance
            are positives, as the paper's figures draw the target) or ``'identity'``
            (the released code).
        off_target_weight: lambda on the T = 0 terms (0.0051, released code).
        loss_weight: overall weight.
        normalize: min-max range per ``'scene'`` (default) or over the whole
            ``'batch'`` (the released code's quirk: one scene's range then depends on
            the other scenes of its batch).
    """

    def __init__(self, target: str = 'same_instance', off_target_weight: float = 0.0051,
                 loss_weight: float = 0.001, normalize: str = 'scene'):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f'target must be one of {TARGETS}, got {target!r}')
        if normalize not in NORMALIZE_SCOPES:
            raise ValueError(f'normalize must be one of {NORMALIZE_SCOPES}, got {normalize!r}')
        self.target = target
        self.off_target_weight = off_target_weight
        self.loss_weight = loss_weight
        self.normalize = normalize

    def similarity(self, features: torch.Tensor, **inputs) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: Sequence[torch.Tensor],
                assignments: Optional[Sequence[torch.Tensor]] = None, **inputs) -> torch.Tensor:
        """Weighted loss summed over scenes, all scenes in one pass (padded to the largest;
        the padding is left out of the ranges and the sums).

        Args:
            features: per scene, instance features [Nq_i, D].
            assignments: per scene, int64 [Nq_i] GT instance index of each query
                (-1: none); needed only for the ``same_instance`` target.
            inputs: further per-scene lists of [Nq_i, ...] tensors, padded like the
                features and passed to ``similarity`` as keyword arguments (ISG's ``low_rank``).
        """
        if self.target == 'same_instance' and assignments is None:
            raise ValueError("target='same_instance' needs the per-scene assignments")
        if assignments is not None and len(assignments) != len(features):
            raise ValueError(f'got {len(features)} feature tensors but {len(assignments)} assignments')
        sizes = [f.shape[0] for f in features]
        if assignments is not None:
            for i, (n, assignment) in enumerate(zip(sizes, assignments)):
                if assignment.shape != (n, ):
                    raise ValueError(f'scene {i}: assignment must have shape ({n},), got {tuple(assignment.shape)}')
        # Zero that stays in the graph (a batch whose scenes have no instance features).
        total = sum(f.sum() for f in features) * 0
        if max(sizes, default=0) == 0:
            return total
        feats = pad_scenes(features)
        sim = self.similarity(feats, **{k: pad_scenes(v) for k, v in inputs.items()})
        if assignments is None:
            assignment = torch.full(feats.shape[:2], -1, dtype=torch.long, device=feats.device)
        else:
            assignment = pad_scenes(assignments, -1)
        valid = pad_scenes([f.new_ones(n, dtype=torch.bool) for f, n in zip(features, sizes)])
        pairs = valid[:, :, None] & valid[:, None, :]
        low, high = masked_range(sim, pairs, (-2, -1) if self.normalize == 'scene' else (0, 1, 2))
        target = similarity_target(assignment, self.target)
        loss = weighted_target_loss(minmax_normalize(sim, low, high), target, self.off_target_weight, pairs)
        return self.loss_weight * (total + loss)
