"""Load the per-point superpoint ids written by the converter."""
import os

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadSuperPointsFromFile(BaseTransform):
    """Read ``results['super_pts_path']`` (int64 [N]) into ``results['sp_pts_mask']``.

    The ids are as stored (ScanNet's sparse segment ids); ``PackInstanceSegInputs``
    makes them dense after any crop. Place it after ``LoadPointsFromFile``: the count
    is checked against the points.
    """

    def transform(self, results):
        path = results['super_pts_path']
        if not os.path.isfile(path):
            raise FileNotFoundError(f'superpoint file not found: {path}')
        sp_pts_mask = np.fromfile(path, dtype=np.int64)
        points = results.get('points')
        if points is not None and len(points) != len(sp_pts_mask):
            raise ValueError(f'{path}: {len(sp_pts_mask)} superpoint ids for '
                             f'{len(points)} points')
        results['sp_pts_mask'] = sp_pts_mask
        return results
