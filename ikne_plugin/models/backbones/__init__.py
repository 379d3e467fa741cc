from .spconv_unet import SpConvUNet

__all__ = ['SpConvUNet']
