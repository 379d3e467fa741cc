"""Heads: the transformer and the kernel head of IKNE."""
from .ikne_kernel_head import IKNEKernelHead
from .ikne_transformer_head import IKNETransformerHead

__all__ = ['IKNEKernelHead', 'IKNETransformerHead']
