"""MAFT's geometric augmentation: one random linear map of the coordinates."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import NORMALS, NUM_WITH_NORMALS, XYZ, points_array, replace_points


@TRANSFORMS.register_module()
class RandomJitterFlipRotate(BaseTransform):
    """``xyz <- xyz @ (I + J) @ F @ R``: jitter, x flip and rotation about z in one map.

    As MAFT's ``data_aug`` (jitter J ~ N(0, 0.1)^{3x3}, x flip with p 0.5, rotation
    angle ~ U[0, 2 pi)); the flip here negates x exactly (the reference negates the
    jittered matrix's [0, 0] entry only). Normals, when present, are mapped by the
    inverse transpose and re-normalised, so they stay perpendicular to the surfaces.

    Args:
        jitter_std (float): standard deviation of each entry of J (0 disables jitter).
        flip_x_prob (float): probability of negating x.
        rotation_range (tuple[float]): range of the rotation angle about z, radians.
    """

    def __init__(self, jitter_std=0.1, flip_x_prob=0.5, rotation_range=(0., 2 * np.pi)):
        if jitter_std < 0 or not 0 <= flip_x_prob <= 1 or len(rotation_range) != 2:
            raise ValueError('expected jitter_std >= 0, flip_x_prob in [0, 1] and '
                             f'rotation_range (low, high); got {jitter_std}, {flip_x_prob}, '
                             f'{rotation_range}')
        self.jitter_std = jitter_std
        self.flip_x_prob = flip_x_prob
        self.rotation_range = tuple(rotation_range)

    def random_matrix(self):
        """Draw the 3x3 matrix M applied as ``xyz @ M``."""
        matrix = np.eye(3) + np.random.randn(3, 3) * self.jitter_std
        if np.random.rand() < self.flip_x_prob:
            matrix = matrix @ np.diag([-1., 1., 1.])
        angle = np.random.uniform(*self.rotation_range)
        cos, sin = np.cos(angle), np.sin(angle)
        return matrix @ np.array([[cos, sin, 0.], [-sin, cos, 0.], [0., 0., 1.]])

    def transform(self, results):
        points = points_array(results['points']).copy()
        matrix = self.random_matrix()
        points[:, XYZ] = points[:, XYZ] @ matrix
        if points.shape[1] >= NUM_WITH_NORMALS:
            normals = points[:, NORMALS] @ np.linalg.inv(matrix).T
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            points[:, NORMALS] = normals / np.maximum(length, 1e-12)
        results['points'] = replace_points(results['points'], points)
        return results
