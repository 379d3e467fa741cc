"""Task modules of the IKNE heads (assigners, post-processing)."""
from .hungarian_matcher import HungarianMatcher
from .matrix_nms import matrix_nms

__all__ = ['HungarianMatcher', 'matrix_nms']
