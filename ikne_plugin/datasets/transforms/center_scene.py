"""Scene centring: the model's xyz input features are relative to the scene's mean."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import XYZ, points_array, replace_points


@TRANSFORMS.register_module()
class CenterScene(BaseTransform):
    """Subtract the mean of the scene's points from their coordinates.

    MAFT's data preparation (``prepare_data_inst_with_normal.py``) stores every ScanNet scene
    centred on its vertices' mean, and the points' xyz are 3 of the model's input features;
    without this step a model sees coordinates several metres off the ones it was trained on
    (converted official weights included), and rotations about the origin swing a scene far
    from it. Put it right after the points are loaded (before any crop), so the mean is over
    all of the scene's vertices as in MAFT. The subtracted mean is kept in ``scene_center``.
    """

    def transform(self, results):
        points = points_array(results['points']).copy()
        center = points[:, XYZ].mean(axis=0, dtype=np.float64)
        points[:, XYZ] = points[:, XYZ] - center
        results['points'] = replace_points(results['points'], points)
        results['scene_center'] = center
        return results
