"""IKNE 3D instance segmentation as an OpenMMLab (mmdet3d) plugin.

Importing the package registers every component in mmdet3d's registries,
so configs only need ``custom_imports = dict(imports=['ikne_plugin'])``.
"""
__version__ = '0.1.0'
