"""Task modules of the IKNE heads (assigners)."""
from .hungarian_matcher import HungarianMatcher

__all__ = ['HungarianMatcher']
