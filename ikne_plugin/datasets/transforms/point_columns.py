"""Column layout of the loaded points and access to them as a numpy array.

Points come from ``LoadPointsFromFile(load_dim=9, use_dim=6 or 9)`` on the converter's
``points/*.bin``: x, y, z (metres), r, g, b (0-255) and optionally nx, ny, nz. The
transforms read ``results['points']`` (mmdet3d ``BasePoints`` or a numpy array) through
:func:`points_array` and store a new array with :func:`replace_points`, keeping its type.
"""
import numpy as np

XYZ, RGB, NORMALS = slice(0, 3), slice(3, 6), slice(6, 9)
NUM_WITH_NORMALS = 9
COLOR_HALF_RANGE = 127.5  # packed colours are rgb / 127.5 - 1, in [-1, 1]


def points_array(points):
    """The points as a float32 numpy array [N, D] (a view of a ``BasePoints`` tensor)."""
    array = points if isinstance(points, np.ndarray) else points.tensor.numpy()
    if array.ndim != 2 or array.shape[1] < 6:
        raise ValueError(f'expected points [N, >=6] (x, y, z, r, g, b[, nx, ny, nz]), '
                         f'got shape {array.shape}')
    return array


def replace_points(points, array):
    """``array`` [N', D] as the same kind of object as ``points``."""
    array = np.ascontiguousarray(array, np.float32)
    return array if isinstance(points, np.ndarray) else points.new_point(array)
