"""Registered data transforms (mmdet3d ``TRANSFORMS``) of the ScanNet pipeline."""
from .center_scene import CenterScene
from .elastic_distortion import ElasticDistortion
from .load_super_points import LoadSuperPointsFromFile
from .pack_instance_seg_inputs import PackInstanceSegInputs
from .random_color_shift import RandomColorShift
from .random_jitter_flip_rotate import RandomJitterFlipRotate
from .shrinking_window_crop import ShrinkingWindowCrop

__all__ = ['CenterScene', 'ElasticDistortion', 'LoadSuperPointsFromFile', 'PackInstanceSegInputs',
           'RandomColorShift', 'RandomJitterFlipRotate', 'ShrinkingWindowCrop']
