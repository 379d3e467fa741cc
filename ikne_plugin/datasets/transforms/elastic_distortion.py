"""MAFT's elastic distortion: coordinates displaced by smooth random noise fields."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from .point_columns import XYZ, points_array, replace_points


def box_blur3(array, axis):
    """3-tap box filter along ``axis`` with zero padding (scipy ``convolve`` mode='constant')."""
    pad = [(0, 0)] * array.ndim
    pad[axis] = (1, 1)
    padded = np.pad(array, pad)
    n = array.shape[axis]
    take = lambda start: padded.take(np.arange(start, start + n), axis=axis)  # noqa: E731
    return (take(0) + take(1) + take(2)) / 3


def trilinear_interpolate(grid, origin, spacing, xyz):
    """Interpolate ``grid`` [X, Y, Z, C] (node (i, j, k) at ``origin + spacing * (i, j, k)``)
    at ``xyz`` [N, 3], which must lie inside the grid; returns [N, C] in the inputs' dtype."""
    shape = np.array(grid.shape[:3])
    position = (xyz - origin) / spacing
    lower = np.clip(np.floor(position).astype(np.int64), 0, shape - 2)
    upper_weight = position - lower
    weights = (1 - upper_weight, upper_weight)  # per axis, for the lower and the upper node
    strides = (shape[1] * shape[2], shape[2], 1)
    base = lower @ np.array(strides)
    flat = grid.reshape(-1, grid.shape[3])
    out = np.zeros((len(xyz), grid.shape[3]), np.result_type(grid, xyz))
    for dx in (0, 1):
        for dy in (0, 1):
            weight_xy = weights[dx][:, 0] * weights[dy][:, 1]
            for dz in (0, 1):
                weight = weight_xy * weights[dz][:, 2]
                corner = base + (dx * strides[0] + dy * strides[1] + dz)
                out += weight[:, None] * flat.take(corner, axis=0)  # take: faster than []
    return out


@TRANSFORMS.register_module()
class ElasticDistortion(BaseTransform):
    """Displace points by smoothed Gaussian noise, once per (granularity, magnitude) pair.

    As MAFT's ``elastic`` in voxel units (default ``voxel_size`` 2 cm, pairs (6, 40) then
    (20, 160)): per pair, three N(0, 1) noise grids are smoothed by 3-tap box filters along
    each axis, twice, and the coordinates move by ``magnitude`` times their trilinear
    interpolation. The reference's grid nodes are ``2 * granularity`` voxels apart (it spans
    ``linspace(-(b - 1) g, (b - 1) g, b)``); we keep that spacing and anchor the grid at
    the scene's corner instead of the origin (the same noise distribution). The point
    count and order never change.

    Args:
        voxel_size (float): metres per voxel unit.
        granularity_magnitude (sequence[tuple[float, float]]): (granularity, magnitude)
            pairs applied in order, both in voxel units.
    """

    def __init__(self, voxel_size=0.02, granularity_magnitude=((6, 40), (20, 160))):
        if voxel_size <= 0 or any(g <= 0 or m < 0 for g, m in granularity_magnitude):
            raise ValueError('expected voxel_size > 0 and (granularity > 0, magnitude >= 0) '
                             f'pairs; got {voxel_size}, {granularity_magnitude}')
        self.voxel_size = voxel_size
        self.granularity_magnitude = tuple(tuple(p) for p in granularity_magnitude)

    def distort(self, xyz, granularity, magnitude):
        """One distortion of ``xyz`` [N, 3] (voxel units)."""
        spacing = np.float32(2 * granularity)
        origin = xyz.min(0) - spacing
        shape = np.ceil((xyz.max(0) - origin) / spacing).astype(np.int64) + 2
        noise = np.random.randn(*shape, 3).astype(np.float32)
        for _ in range(2):
            for axis in range(3):
                noise = box_blur3(noise, axis)
        return xyz + trilinear_interpolate(noise, origin, spacing, xyz) * np.float32(magnitude)

    def transform(self, results):
        points = points_array(results['points']).copy()
        if len(points):
            xyz = points[:, XYZ] / np.float32(self.voxel_size)
            for granularity, magnitude in self.granularity_magnitude:
                xyz = self.distort(xyz, granularity, magnitude)
            points[:, XYZ] = xyz * np.float32(self.voxel_size)
        results['points'] = replace_points(results['points'], points)
        return results
