"""Scene centring: the model's xyz input features are relative to the scene's mean."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import XYZ, points_array, replace_points


@TRANSFORMS.register_module()
class CenterScene(BaseTransform):
    """Subtract the mean of the scene's points from their coordinates along ``axes``.

    MAFT's data preparation (``prepare_data_inst_with_normal.py``) stores every ScanNet scene
    centred on its vertices' mean along x, y and z, and the points' xyz are 3 of the model's
    input features; without this step a model sees coordinates several metres off the ones
    it was trained on (converted official weights included), and rotations about the origin
    swing a scene far from it. ``axes='xy'`` keeps the height above the floor (z), a strong
    cue for wall-mounted classes, and still centres the rotation about z. Put it right after
    the points are loaded (before any crop), so the mean is over all of the scene's vertices
    as in MAFT. The subtracted offset is kept in ``scene_center`` (0 on axes not centred).

    Args:
        axes (str): the axes to centre, a subset of 'xyz' (MAFT: 'xyz').
    """

    def __init__(self, axes='xyz'):
        if not axes or any(a not in 'xyz' for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"CenterScene: axes must be distinct letters of 'xyz', got {axes!r}")
        self.axes = ['xyz'.index(a) for a in axes]

    def transform(self, results):
        points = points_array(results['points']).copy()
        center = np.zeros(3)
        center[self.axes] = points[:, XYZ][:, self.axes].mean(axis=0, dtype=np.float64)
        points[:, XYZ] = points[:, XYZ] - center
        results['points'] = replace_points(results['points'], points)
        results['scene_center'] = center
        return results
