"""ScanNet v2 data: raw readers, converter, synthetic scenes, dataset and transforms.

Importing it registers ``IKNEScanNetDataset`` in mmdet3d's ``DATASETS`` and the
transforms in ``TRANSFORMS``.
"""
from .scannet_dataset import IKNEScanNetDataset
from .transforms import (ElasticDistortion, LoadSuperPointsFromFile, PackInstanceSegInputs,
                         RandomColorShift, RandomJitterFlipRotate, ShrinkingWindowCrop)

__all__ = ['IKNEScanNetDataset', 'ElasticDistortion', 'LoadSuperPointsFromFile',
           'PackInstanceSegInputs', 'RandomColorShift', 'RandomJitterFlipRotate',
           'ShrinkingWindowCrop']
