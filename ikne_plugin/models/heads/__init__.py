"""Heads: the transformer head of IKNE."""
from .ikne_transformer_head import IKNETransformerHead

__all__ = ['IKNETransformerHead']
