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
from typing import Optional, Sequence

import torch
from torch import nn

from .mask_iou import pairwise_mask_iou

TARGETS = ('same_instance', 'identity')
NORMALIZE_SCOPES = ('scene', 'batch')


@torch.no_grad()
def assign_by_mask_iou(mask_logits: torch.Tensor, gt_masks: torch.Tensor,
                       iou_thr: float = 0.5) -> torch.Tensor:
    """GT instance of highest mask IoU per query, or -1 where that IoU < ``iou_thr``.

    mask_logits: [Q, S]; gt_masks: [K, S] -> int64 [Q].
    """
    assignment = torch.full((mask_logits.shape[0], ), -1, dtype=torch.long, device=mask_logits.device)
    if gt_masks.shape[0] == 0:
        return assignment
    best_iou, best_gt = pairwise_mask_iou(mask_logits, gt_masks).max(dim=1)
    return torch.where(best_iou >= iou_thr, best_gt, assignment)


def similarity_target(assignment: torch.Tensor, kind: str) -> torch.Tensor:
    """Binary [Nq, Nq] target: 1 on the diagonal, and (``same_instance``) where queries
    i and j are assigned to the same GT instance (assignment >= 0)."""
    eye = torch.eye(assignment.shape[0], dtype=torch.bool, device=assignment.device)
    if kind == 'identity':
        return eye
    same = (assignment[:, None] == assignment[None, :]) & (assignment[:, None] >= 0)
    return same | eye


def minmax_normalize(sim: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(S - low) / (high - low), guarded against a constant S."""
    return (sim - low) / (high - low).clamp_min(1e-12)


def weighted_target_loss(sim: torch.Tensor, target: torch.Tensor, off_target_weight: float) -> torch.Tensor:
    """sum over T = 1 of (S - 1)^2 + off_target_weight * sum over T = 0 of S^2."""
    sq = (sim - target.to(sim.dtype)) ** 2
    # where() rather than boolean indexing, which waits for the GPU to count the selection
    return torch.where(target, sq, 0).sum() + off_target_weight * torch.where(target, 0, sq).sum()


class InstanceSimilarityLoss(nn.Module):
    """Base of IKA / ISG: subclasses define ``similarity(features) -> [Nq, Nq]``.

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

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: Sequence[torch.Tensor],
                assignments: Optional[Sequence[torch.Tensor]] = None, **inputs) -> torch.Tensor:
        """Weighted loss summed over scenes.

        Args:
            features: per scene, instance features [Nq_i, D].
            assignments: per scene, int64 [Nq_i] GT instance index of each query
                (-1: none); needed only for the ``same_instance`` target.
            inputs: further per-scene lists, passed scene by scene to ``similarity`` as
                keyword arguments (ISG's ``low_rank``).
        """
        if self.target == 'same_instance' and assignments is None:
            raise ValueError("target='same_instance' needs the per-scene assignments")
        if assignments is not None and len(assignments) != len(features):
            raise ValueError(f'got {len(features)} feature tensors but {len(assignments)} assignments')
        sims = [self.similarity(f, **{k: v[i] for k, v in inputs.items()}) if f.shape[0] else None
                for i, f in enumerate(features)]
        if self.normalize == 'batch' and any(s is not None for s in sims):
            low = torch.stack([s.min() for s in sims if s is not None]).min()
            high = torch.stack([s.max() for s in sims if s is not None]).max()
        # Zero that stays in the graph (a batch whose scenes have no instance features).
        total = sum(f.sum() for f in features) * 0
        for i, sim in enumerate(sims):
            if sim is None:
                continue
            if self.normalize == 'scene':
                low, high = sim.min(), sim.max()
            n = sim.shape[0]
            assignment = assignments[i] if assignments is not None else sim.new_full((n, ), -1).long()
            if assignment.shape != (n, ):
                raise ValueError(f'scene {i}: assignment must have shape ({n},), got {tuple(assignment.shape)}')
            target = similarity_target(assignment, self.target)
            total = total + weighted_target_loss(minmax_normalize(sim, low, high), target, self.off_target_weight)
        return self.loss_weight * total
