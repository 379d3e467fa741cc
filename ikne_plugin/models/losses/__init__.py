"""Losses of the IKNE heads."""
from .ika_loss import IKALoss
from .ikne_criterion import IKNECriterion
from .instance_similarity import InstanceSimilarityLoss, assign_by_mask_iou, similarity_target
from .isg_loss import ISGLoss, truncated_svd_reconstruction
from .mask_iou import pairwise_mask_iou

__all__ = ['IKALoss', 'ISGLoss', 'IKNECriterion', 'InstanceSimilarityLoss', 'assign_by_mask_iou',
           'similarity_target', 'truncated_svd_reconstruction', 'pairwise_mask_iou']
