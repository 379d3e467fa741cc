"""IKA, Instance-wise Knowledge Aggregation: supervise the self-similarity F F^T of the instance features."""
import torch
from mmdet3d.registry import MODELS

from .instance_similarity import InstanceSimilarityLoss


@MODELS.register_module()
class IKALoss(InstanceSimilarityLoss):
    """S = F F^T (Nq x Nq), min-max normalised, against a binary target.

    See :class:`InstanceSimilarityLoss` for the loss form and options. Defaults:
    ``same_instance`` target (the paper's figure), lambda 0.0051 and weight 0.001
    (released code), per-scene normalisation.
    """

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """F F^T of each scene: [B, N, D] -> [B, N, N]."""
        return features @ features.mT
