"""MAFT's crop: keep the points in a random window, shrunk until few enough remain."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import XYZ, points_array, replace_points


@TRANSFORMS.register_module()
class ShrinkingWindowCrop(BaseTransform):
    """Crop a scene with more than ``max_npoint`` points to an axis-aligned window.

    As MAFT's ``crop`` (there in 2 cm voxels: window 512, step 32, doubled above 1M points,
    ``max_npoint`` 250k): while too many points remain, the window (``window`` metres wide
    on each axis) is placed at a random offset within the scene's extent, the points inside
    are kept, and its x and y sides shrink by ``step``. Scenes within the limit pass
    unchanged. Every per-point array in ``per_point_keys`` is cropped alike; superpoints
    and instances are re-indexed densely later, by ``PackInstanceSegInputs``. Training only.

    Args:
        max_npoint (int): the most points a scene may keep.
        window (float): initial window side in metres (512 voxels of 2 cm).
        step (float): shrink per try in metres (32 voxels of 2 cm), doubled while more
            than a million points remain in the window.
        per_point_keys (sequence[str]): result keys holding per-point arrays.
    """

    def __init__(self, max_npoint=250000, window=10.24, step=0.64,
                 per_point_keys=('pts_semantic_mask', 'pts_instance_mask', 'sp_pts_mask')):
        if max_npoint < 1 or window <= 0 or step <= 0:
            raise ValueError('expected max_npoint >= 1, window > 0 and step > 0; got '
                             f'{max_npoint}, {window}, {step}')
        self.max_npoint = max_npoint
        self.window = window
        self.step = step
        self.per_point_keys = tuple(per_point_keys)

    def crop_mask(self, xyz):
        """Boolean [N] mask of the points to keep."""
        keep = np.ones(len(xyz), bool)
        relative = xyz - xyz.min(0)
        extent = relative.max(0) if len(xyz) else np.zeros(3)
        window = np.full(3, float(self.window))
        while keep.sum() > self.max_npoint:
            if window[0] <= 0:
                raise ValueError(f'cannot crop {len(xyz)} points to {self.max_npoint}: the '
                                 'window shrank to nothing')
            offset = np.minimum(window - extent, 0) * np.random.rand(3)
            shifted = relative + offset
            keep = (shifted >= 0).all(1) & (shifted < window).all(1)
            window[:2] -= self.step * (2 if keep.sum() > 1_000_000 else 1)
        return keep

    def transform(self, results):
        points = points_array(results['points'])
        if len(points) <= self.max_npoint:
            return results
        keep = self.crop_mask(points[:, XYZ])
        results['points'] = replace_points(results['points'], points[keep])
        for key in self.per_point_keys:
            if key in results:
                results[key] = results[key][keep]
        return results
