"""Model components; importing this registers them in mmdet3d's ``MODELS``."""
from . import backbones, detectors, heads, layers, losses, task_modules

__all__ = ['backbones', 'detectors', 'heads', 'layers', 'losses', 'task_modules']
