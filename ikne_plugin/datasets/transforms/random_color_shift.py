"""MAFT's colour augmentation: one random offset added to every point's colour."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import COLOR_HALF_RANGE, RGB, points_array, replace_points


@TRANSFORMS.register_module()
class RandomColorShift(BaseTransform):
    """``rgb += N(0, std)^3``, the same shift for all points of the scene (not clipped).

    MAFT adds ``randn(3) * 0.1`` to colours scaled to [-1, 1]; here colours are still
    0-255, so the shift is drawn with ``std * 127.5``.

    Args:
        std (float): standard deviation in units of the [-1, 1]-scaled colour.
    """

    def __init__(self, std=0.1):
        if std < 0:
            raise ValueError(f'std must be >= 0, got {std}')
        self.std = std

    def transform(self, results):
        points = points_array(results['points']).copy()
        points[:, RGB] += np.random.randn(3) * self.std * COLOR_HALF_RANGE
        results['points'] = replace_points(results['points'], points)
        return results
