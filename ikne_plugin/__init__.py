"""IKNE 3D instance segmentation as an OpenMMLab (mmdet3d) plugin.

Importing the package registers every component in mmdet3d's registries,
so configs only need ``custom_imports = dict(imports=['ikne_plugin'])``.
"""
from .utils import allow_mmengine_checkpoint_globals

allow_mmengine_checkpoint_globals()

from . import datasets, evaluation, models  # noqa: E402,F401  (register components)

__version__ = '0.1.0'
