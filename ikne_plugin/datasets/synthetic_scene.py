"""The synthetic ScanNet-size scene that every benchmark measures on (issue 6: one scene
generator for every figure, so that ours and the peer's numbers stay comparable).

Points on the floor and walls of a 6 x 5 m room and on the top and sides of 12 furniture
boxes (the instances), sampled by area with 3 mm noise; superpoints are the 0.26 m squares
of each face. 150k points give about 128k voxels at 2 cm and 2.9k superpoints, the sizes of
MAFT's measurement in issue 6 (129k voxels, 2,819 superpoints).
"""
import numpy as np

ROOM = (6.0, 5.0, 2.6)  # metres
NUM_BOXES = 12
SUPERPOINT_SIZE = 0.26  # metres
NOISE = 0.003  # metres
NUM_CLASSES = 18  # ScanNet's instance classes: the boxes' labels


def _box_faces(lo, hi, with_bottom):
    """(origin, u edge, v edge) of the faces of an axis-aligned box (or room shell)."""
    size = hi - lo
    ex, ey, ez = np.diag(size)
    faces = [(lo, ex, ey)] if with_bottom else []
    faces += [(lo + ez, ex, ey),  # top
              (lo, ex, ez), (lo + ey, ex, ez), (lo, ey, ez), (lo + ex, ey, ez)]  # sides
    return faces


def synthetic_scene(num_points, seed):
    """A room-like scene: dict of ``points`` float32 [N, 6] (x, y, z, rgb in [-1, 1]),
    ``superpoints`` int64 [N] (dense), ``instance`` int64 [N] (-1 on the room shell) and
    ``labels`` int64 [K] (instance class of each box)."""
    rng = np.random.default_rng(seed)
    room = np.array(ROOM)
    # the shell: floor and four walls (the bottom face of a box is the floor)
    shell = _box_faces(np.zeros(3), room, with_bottom=True)
    surfaces = [(face, -1) for face in shell[:1] + shell[2:]]
    for k in range(NUM_BOXES):
        size = rng.uniform([0.4, 0.4, 0.4], [2.0, 1.6, 2.0])
        lo = np.append(rng.uniform(0, room[:2] - size[:2]), 0.0)
        surfaces += [(face, k) for face in _box_faces(lo, lo + size, with_bottom=False)]
    origins = np.stack([f[0] for f, _ in surfaces])
    edge_u = np.stack([f[1] for f, _ in surfaces])
    edge_v = np.stack([f[2] for f, _ in surfaces])
    areas = np.linalg.norm(np.cross(edge_u, edge_v), axis=1)
    surface = rng.choice(len(surfaces), num_points, p=areas / areas.sum())
    uv = rng.random((num_points, 2))
    xyz = origins[surface] + uv[:, :1] * edge_u[surface] + uv[:, 1:] * edge_v[surface]
    xyz += rng.normal(0, NOISE, xyz.shape)
    # superpoints: SUPERPOINT_SIZE squares of each face
    cells = np.floor(uv * np.stack([np.linalg.norm(edge_u, axis=1),
                                    np.linalg.norm(edge_v, axis=1)], 1)[surface]
                     / SUPERPOINT_SIZE).astype(np.int64)
    key = (surface * 1024 + cells[:, 0]) * 1024 + cells[:, 1]
    superpoints = np.unique(key, return_inverse=True)[1].reshape(-1)
    instance = np.array([k for _, k in surfaces])[surface]
    colours = rng.uniform(-1, 1, (NUM_BOXES + 1, 3))
    rgb = np.clip(colours[instance] + rng.normal(0, 0.05, (num_points, 3)), -1, 1)
    points = np.concatenate([xyz - xyz.min(0), rgb], 1).astype(np.float32)
    return dict(points=points, superpoints=superpoints, instance=instance,
                labels=rng.integers(0, NUM_CLASSES, NUM_BOXES))
