"""Checks of a scene's points before they reach the model, shared by the converter, the
dataset and ``tools/infer.py``: every refusal names the file and the problem."""
import os

import numpy as np

from ..utils import UserInputError

FLOAT32_BYTES = 4
# ScanNet v2's largest scene has about 0.5 M vertices (its 2 cm voxels, not the points,
# set the model's cost); the dataset refuses scenes with more points than this.
DEFAULT_MAX_POINTS = 1_000_000


def check_points(xyz, source):
    """Refuse a scene without points or with NaN or infinite coordinates (``xyz`` [N, 3])."""
    if len(xyz) == 0:
        raise UserInputError(f'{source}: the scene has no points')
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise UserInputError(f'{source}: {int(bad.sum())} of {len(xyz)} points have NaN or '
                             f'infinite coordinates (the first is point {int(bad.argmax())})')


def check_points_file(path, num_features, max_points=DEFAULT_MAX_POINTS, expected_points=None):
    """Check a converter ``points/*.bin`` (float32 rows of ``num_features`` values): not
    empty, a whole number of rows, at most ``max_points`` rows (judged from the size, before
    reading), ``expected_points`` rows if given (an info file's count: a file of other
    columns can still be a whole number of rows) and finite coordinates. Returns the number
    of points."""
    size = os.path.getsize(path)
    if size == 0:
        raise UserInputError(f'{path}: empty file')
    row = FLOAT32_BYTES * num_features
    if size % row:
        raise UserInputError(f'{path}: {size} bytes is not a whole number of points of '
                             f'{num_features} float32 values (x, y, z, r, g, b, nx, ny, nz): '
                             'truncated, or written with other columns (e.g. without colours)')
    num_points = size // row
    if num_points > max_points:
        raise UserInputError(f'{path}: {num_points:,} points, more than max_points='
                             f'{max_points:,}: the model would need too much memory; crop or '
                             'subsample the scene (tools/infer.py does), or raise the '
                             "dataset's max_points")
    if expected_points is not None and num_points != expected_points:
        raise UserInputError(f'{path}: {size} bytes are {num_points} points of {num_features} '
                             f'float32 values, but the info file lists {expected_points} points: '
                             'truncated, or written with other columns (e.g. without colours)')
    xyz = np.fromfile(path, np.float32).reshape(num_points, num_features)[:, :3]
    check_points(xyz, path)
    return num_points
