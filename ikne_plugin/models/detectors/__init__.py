from .ikne import IKNE

__all__ = ['IKNE']
