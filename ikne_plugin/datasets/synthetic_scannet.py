"""Procedural rooms written in ScanNet v2's raw layout: the project's embedded default data.

Each room is a floor and four walls plus 5-30 pieces of furniture of the 18 ScanNet
instance classes (and the odd unevaluated ``box``). Every class has its own shape (built
from subdivided boxes, cylinders and wavy sheets), size range, colour and placement rule
(free-standing, backed against a wall, or mounted on a wall), so a small model learns them
in minutes on a CPU. Objects are separate closed meshes placed without overlap (many touch
each other, the walls or the floor); since ``segment_mesh`` only joins along mesh edges,
no superpoint crosses an object boundary. Small Gaussian vertex noise and colour noise
keep the surfaces scan-like.

The output is exactly what the converter reads from real ScanNet: ``<split>/<scene>``
``_vh_clean_2.ply`` (binary, with faces and colours), ``_vh_clean_2.labels.ply``,
``_vh_clean_2.0.010000.segs.json`` (from ``segment_mesh``), ``.aggregation.json`` (walls
and floor are objects too, as in ScanNet), and the label map at the root. The same seed
gives byte-identical files.
"""
import json
import math
import os
from typing import NamedTuple

import numpy as np
import torch

from ..ops import segment_mesh
from ..utils import atomic_write
from .label_map import LABEL_MAP_FILE, write_label_map
from .ply import write_ply
from .scannet_raw import (AGGREGATION_SUFFIX, LABELS_MESH_SUFFIX, MESH_SUFFIX, SEGS_SUFFIX,
                          scene_file)


class ObjectClass(NamedTuple):
    """How one furniture class looks and where it stands."""
    raw_category: str  # its name in the aggregation (a raw category of ScanNet's label map)
    nyu40_id: int
    nyu40_name: str
    shape: str  # see object_parts
    # (kind, z_lo, z_hi): 'free' stands anywhere, 'wall' backs onto a wall, 'mounted' hangs
    # flat on one; the bottom's height is drawn from [z_lo, z_hi]
    placement: tuple
    size_ranges: tuple  # (w, d, h) ranges in metres: w along the front, d front to back
    rgb: tuple  # mean colour
    rgb_std: float  # per-instance colour spread


OBJECT_CLASSES = {
    'cabinet': ObjectClass('cabinet', 3, 'cabinet', 'box', ('wall', 0, 0),
        ((.6, 1.2), (.4, .6), (.7, 1.1)), (150, 100, 60), 12),
    'bed': ObjectClass('bed', 4, 'bed', 'bed', ('wall', 0, 0),
        ((1.4, 1.9), (1.9, 2.1), (.9, 1.1)), (235, 235, 240), 8),
    'chair': ObjectClass('chair', 5, 'chair', 'chair', ('free', 0, 0),
        ((.45, .55), (.45, .55), (.8, 1.)), (60, 90, 170), 15),
    'sofa': ObjectClass('sofa', 6, 'sofa', 'sofa', ('wall', 0, 0),
        ((1.6, 2.2), (.8, .95), (.75, .9)), (160, 40, 40), 15),
    'table': ObjectClass('table', 7, 'table', 'table', ('free', 0, 0),
        ((.8, 1.6), (.7, 1.), (.72, .78)), (195, 155, 100), 12),
    'door': ObjectClass('door', 8, 'door', 'box', ('mounted', 0., 0.),
        ((.8, .95), (.04, .06), (2., 2.1)), (110, 70, 40), 10),
    'window': ObjectClass('window', 9, 'window', 'box', ('mounted', .8, 1.),
        ((.8, 1.5), (.05, .08), (.9, 1.3)), (170, 210, 245), 8),
    'bookshelf': ObjectClass('bookshelf', 10, 'bookshelf', 'bookshelf', ('wall', 0, 0),
        ((.7, 1.2), (.28, .38), (1.6, 2.)), (110, 75, 45), 10),
    'picture': ObjectClass('picture', 11, 'picture', 'box', ('mounted', 1.2, 1.6),
        ((.4, .9), (.03, .04), (.3, .7)), (200, 60, 160), 40),
    'counter': ObjectClass('kitchen counter', 12, 'counter', 'counter', ('wall', 0, 0),
        ((1.5, 2.5), (.6, .65), (.88, .92)), (80, 80, 85), 8),
    'desk': ObjectClass('desk', 14, 'desk', 'desk', ('wall', 0, 0),
        ((1., 1.5), (.6, .75), (.72, .76)), (70, 70, 70), 8),
    'curtain': ObjectClass('curtain', 16, 'curtain', 'sheet', ('mounted', .05, .1),
        ((1., 2.), (.12, .14), (2., 2.3)), (205, 170, 80), 12),
    'refrigerator': ObjectClass('refrigerator', 24, 'refridgerator', 'box', ('wall', 0, 0),
        ((.6, .8), (.65, .75), (1.7, 1.9)), (225, 230, 235), 6),
    'shower curtain': ObjectClass('shower curtain', 28, 'shower curtain', 'sheet',
        ('free', .1, .15), ((1.2, 1.6), (.12, .14), (1.8, 2.)), (110, 200, 200), 10),
    'toilet': ObjectClass('toilet', 33, 'toilet', 'toilet', ('wall', 0, 0),
        ((.38, .45), (.65, .75), (.75, .8)), (250, 250, 250), 3),
    'sink': ObjectClass('sink', 34, 'sink', 'sink', ('wall', 0, 0),
        ((.45, .6), (.4, .5), (.85, .9)), (215, 215, 235), 5),
    'bathtub': ObjectClass('bathtub', 36, 'bathtub', 'bathtub', ('wall', 0, 0),
        ((1.5, 1.7), (.7, .8), (.5, .6)), (245, 240, 225), 4),
    'otherfurniture': ObjectClass('ottoman', 39, 'otherfurniture', 'cylinder', ('free', 0, 0),
        ((.4, .7), (.4, .7), (.35, .5)), (120, 160, 60), 40),
    'box': ObjectClass('box', 29, 'box', 'box', ('free', 0, 0),
        ((.3, .5), (.3, .5), (.3, .5)), (175, 135, 85), 10),
}
STRUCTURE_CLASSES = {'wall': ('wall', 1, 'wall', (200, 195, 185)),
                     'floor': ('floor', 2, 'floor', (125, 125, 130))}
# How often each furniture class is drawn (unevaluated boxes are rare distractors).
CLASS_WEIGHTS = {name: (0.3 if name == 'box' else 2. if name == 'chair' else 1.)
                 for name in OBJECT_CLASSES}
MIN_OBJECT_VERTICES = 400  # well above the benchmark's 100-vertex instance floor
VERTEX_COLOUR_STD = 6.
SHEET_THICKNESS, FOLD_PERIOD = 0.02, 0.3  # curtains, in metres


def box_mesh(size, spacing, shape='box'):
    """Closed triangle mesh of an axis-aligned box (centred at 0) with ~``spacing`` edges.

    Vertices are the boundary points of a lattice, so the six sides share their edges.
    ``shape='cylinder'`` maps each horizontal square section onto the inscribed ellipse.
    Returns ``(vertices float64 [V,3], faces int64 [F,3])`` with outward-facing triangles.
    """
    size = np.asarray(size, np.float64)
    n = np.maximum(1, np.ceil(size / spacing).astype(int))
    lattice = np.stack(np.meshgrid(*[np.linspace(-0.5, 0.5, k + 1) for k in n], indexing='ij'), -1)
    boundary = np.zeros(tuple(n + 1), bool)
    for axis in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            boundary[tuple(index)] = True
    ids = np.full(boundary.shape, -1, np.int64)
    ids[boundary] = np.arange(boundary.sum())
    unit = lattice[boundary]
    if shape == 'cylinder':  # square [-1,1]^2 -> disk, keeping the lattice's topology
        x, y = 2 * unit[:, 0], 2 * unit[:, 1]
        unit = np.stack([x * np.sqrt(1 - y * y / 2) / 2, y * np.sqrt(1 - x * x / 2) / 2,
                         unit[:, 2]], 1)
    faces = []
    for axis in range(3):  # side grids indexed (u, v) with u x v = +axis
        grid = np.moveaxis(ids, axis, 0)
        if axis == 1:
            grid = grid.transpose(0, 2, 1)
        for end, outward in ((-1, True), (0, False)):
            g = grid[end]
            quad = [g[:-1, :-1], g[1:, :-1], g[1:, 1:], g[:-1, 1:]]
            tri = np.concatenate([np.stack([quad[0], quad[1], quad[2]], -1).reshape(-1, 3),
                                  np.stack([quad[0], quad[2], quad[3]], -1).reshape(-1, 3)])
            faces.append(tri if outward else tri[:, ::-1])
    return unit * size, np.concatenate(faces)


def sheet_mesh(size_u, size_v, spacing):
    """Open rectangular grid in the (u, v) plane (for floor and walls): vertices [V,3], faces."""
    nu, nv = max(1, math.ceil(size_u / spacing)), max(1, math.ceil(size_v / spacing))
    u, v = np.meshgrid(np.linspace(0, size_u, nu + 1), np.linspace(0, size_v, nv + 1),
                       indexing='ij')
    ids = np.arange(u.size).reshape(u.shape)
    quad = [ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]]
    faces = np.concatenate([np.stack([quad[0], quad[1], quad[2]], -1).reshape(-1, 3),
                            np.stack([quad[0], quad[2], quad[3]], -1).reshape(-1, 3)])
    return np.stack([u.ravel(), v.ravel(), np.zeros(u.size)], 1), faces


def object_parts(shape, w, d, h, rng):
    """Parts of one object in its frame (x along the front, back at +y, floor at z=0).

    Returns ``[(centre, size, part_shape, rgb_offset), ...]``; ``rgb_offset`` shifts the
    class colour for that part (e.g. darker legs, coloured books).
    """
    dark = (-60, -60, -60)
    if shape in ('box', 'cylinder'):
        return [((0, 0, h / 2), (w, d, h), shape, (0, 0, 0))]
    if shape == 'sheet':  # a thin sheet; its folds fill the depth d
        return [((0, 0, h / 2), (w, SHEET_THICKNESS, h), 'sheet', (0, 0, 0))]
    if shape in ('table', 'chair'):
        seat = h if shape == 'table' else 0.45
        leg = 0.05
        parts = [((sx * (w - leg) / 2, sy * (d - leg) / 2, (seat - 0.04) / 2),
                  (leg, leg, seat - 0.04), 'box', dark) for sx in (-1, 1) for sy in (-1, 1)]
        parts.append(((0, 0, seat - 0.02), (w, d, 0.04), 'box', (0, 0, 0)))
        if shape == 'chair':
            back = ((0, (d - 0.05) / 2, (seat + h) / 2), (w, 0.05, h - seat), 'box', (0, 0, 0))
            parts.append(back)
        return parts
    if shape == 'sofa':
        base, arm, darker = 0.45 * h, 0.15, (-20, -10, -10)
        return [((0, -0.1, base / 2), (w - 2 * arm, d - 0.2, base), 'box', (0, 0, 0)),
                ((0, (d - 0.2) / 2, h / 2), (w, 0.2, h), 'box', darker)] + [
                ((side * (w - arm) / 2, -0.1, 0.65 * h / 2), (arm, d - 0.2, 0.65 * h), 'box', darker)
                for side in (-1, 1)]
    if shape == 'bed':
        return [((0, -0.03, 0.25), (w, d - 0.06, 0.5), 'box', (0, 0, 0)),
                ((0, (d - 0.06) / 2, h / 2), (w, 0.06, h), 'box', (-140, -160, -180)),
                ((0, d / 2 - 0.3, 0.56), (0.6 * w, 0.35, 0.12), 'box', (0, 0, -40))]
    if shape == 'desk':
        return [((0, 0, h - 0.02), (w, d, 0.04), 'box', (0, 0, 0)),
                ((-(w - 0.04) / 2, 0, (h - 0.04) / 2), (0.04, d, h - 0.04), 'box', (30, 30, 30)),
                (((w - 0.04) / 2, 0, (h - 0.04) / 2), (0.04, d, h - 0.04), 'box', (30, 30, 30))]
    if shape == 'counter':
        return [((0, 0.02, (h - 0.04) / 2), (w - 0.04, d - 0.04, h - 0.04), 'box', (150, 150, 145)),
                ((0, 0, h - 0.02), (w, d, 0.04), 'box', (0, 0, 0))]
    if shape == 'toilet':
        return [((0, (d - 0.2) / 2, h / 2), (w, 0.2, h), 'box', (0, 0, 0)),
                ((0, -0.1, 0.2), (w, d - 0.2, 0.4), 'cylinder', (0, 0, 0))]
    if shape == 'sink':
        return [((0, 0, 0.35), (0.2, 0.2, 0.7), 'cylinder', (0, 0, 0)),
                ((0, 0, (h + 0.7) / 2), (w, d, h - 0.7), 'box', (0, 0, 0))]
    if shape == 'bathtub':
        t = 0.06
        return [((0, 0, t / 2), (w, d, t), 'box', (0, 0, 0)),
                ((0, -(d - t) / 2, h / 2), (w, t, h), 'box', (0, 0, 0)),
                ((0, (d - t) / 2, h / 2), (w, t, h), 'box', (0, 0, 0)),
                ((-(w - t) / 2, 0, h / 2), (t, d - 2 * t, h), 'box', (0, 0, 0)),
                (((w - t) / 2, 0, h / 2), (t, d - 2 * t, h), 'box', (0, 0, 0))]
    if shape == 'bookshelf':
        t = 0.03
        parts = [((sx * (w - t) / 2, 0, h / 2), (t, d, h), 'box', (0, 0, 0)) for sx in (-1, 1)]
        parts.append(((0, (d - t) / 2, h / 2), (w - 2 * t, t, h), 'box', (0, 0, 0)))
        parts.append(((0, -t / 2, h - t / 2), (w - 2 * t, d - t, t), 'box', (0, 0, 0)))
        for z in np.arange(0, h - 0.35, 0.4):
            parts.append(((0, -t / 2, z + t / 2), (w - 2 * t, d - t, t), 'box', (0, 0, 0)))
            book_h = 0.25 + 0.05 * rng.random()
            parts.append(((0, 0, z + t + book_h / 2), (w - 2 * t - 0.04, d - 2 * t, book_h), 'box',
                          tuple(rng.integers(-100, 140, 3))))
        return parts
    raise ValueError(f'unknown shape {shape!r}')


def _place(rng, placement, w, d, h, room, placed):
    """Pick a pose for a (w, d, h) object; return ``(yaw_quarter_turns, lo, hi)`` or None.

    Boxes are axis-aligned (yaw in quarter turns); two objects may touch but not overlap.
    """
    lx, ly, lz = room
    kind, z_lo, z_hi = placement
    z0 = z_lo + rng.random() * (z_hi - z_lo)
    if kind == 'free':
        quarter = int(rng.integers(4))
        ex, ey = (w, d) if quarter % 2 == 0 else (d, w)
        free_standing = [(lo, hi) for lo, hi in placed if lo[2] == 0]
        if free_standing and rng.random() < 0.35:  # push against a neighbour
            lo_n, hi_n = free_standing[rng.integers(len(free_standing))]
            axis, side = int(rng.integers(2)), int(rng.integers(2))
            centre = lo_n[:2] + (hi_n[:2] - lo_n[:2]) * rng.random(2)
            extent = (ex, ey)[axis]
            centre[axis] = hi_n[axis] + extent / 2 if side else lo_n[axis] - extent / 2
        else:
            centre = np.array([ex / 2 + rng.random() * (lx - ex),
                               ey / 2 + rng.random() * (ly - ey)])
    else:
        wall = int(rng.integers(4))  # 0: y=0, 1: x=lx, 2: y=ly, 3: x=0; the back faces it
        quarter = (2, 3, 0, 1)[wall]
        ex, ey = (w, d) if quarter % 2 == 0 else (d, w)
        gap = 0. if kind == 'mounted' or rng.random() < 0.5 else 0.005 + 0.025 * rng.random()
        along_len = lx if wall in (0, 2) else ly
        along = w / 2 + rng.random() * (along_len - w)
        off = d / 2 + gap
        centre = np.array([(along, off), (lx - off, along), (along, ly - off), (off, along)][wall])
    lo = np.array([centre[0] - ex / 2, centre[1] - ey / 2, z0])
    hi = np.array([centre[0] + ex / 2, centre[1] + ey / 2, z0 + h])
    eps = 1e-9
    if (lo < -eps).any() or (hi > np.array(room) + eps).any():
        return None
    for lo_o, hi_o in placed:
        if ((lo < hi_o - eps) & (lo_o < hi - eps)).all():
            return None
    return quarter, lo, hi


def generate_room(rng, spacing=0.09, noise=0.003):
    """One random room.

    Args:
        rng: ``np.random.Generator``; the room is a pure function of its state.
        spacing: target mesh edge length in metres (0.09 gives ~15-30k vertices a room).
        noise: standard deviation of the Gaussian vertex displacement in metres.

    Returns:
        dict with ``xyz`` float32 [V,3], ``rgb`` uint8 [V,3], ``faces`` int64 [F,3],
        ``nyu40`` int64 [V], ``object_index`` int64 [V] and ``objects`` (raw category of
        each object, in object order).
    """
    room = (4 + 3 * rng.random(), 4 + 3 * rng.random(), 2.5 + 0.3 * rng.random())
    lx, ly, lz = room
    meshes = []  # (vertices, faces, rgb mean, object index)
    objects = []
    floor_rgb = np.array([(125, 125, 130), (150, 115, 80)][rng.integers(2)], np.float64)
    verts, faces = sheet_mesh(lx, ly, spacing)
    meshes.append((verts, faces, floor_rgb, len(objects)))
    objects.append(STRUCTURE_CLASSES['floor'][0])
    wall_rgb = np.array(STRUCTURE_CLASSES['wall'][3]) + rng.normal(0, 10, 3)
    for origin, direction, length in (((0, 0), (1, 0), lx), ((lx, 0), (0, 1), ly),
                                      ((lx, ly), (-1, 0), lx), ((0, ly), (0, -1), ly)):
        uv, faces = sheet_mesh(length, lz, spacing)
        verts = np.stack([origin[0] + direction[0] * uv[:, 0], origin[1] + direction[1] * uv[:, 0],
                          uv[:, 1]], 1)
        meshes.append((verts, faces, wall_rgb, len(objects)))
        objects.append(STRUCTURE_CLASSES['wall'][0])

    names = list(OBJECT_CLASSES)
    weights = np.array([CLASS_WEIGHTS[n] for n in names])
    placed = []
    target = int(rng.integers(5, 31))
    for _draw in range(3 * target):  # a drawn object that finds no free spot is skipped
        if len(placed) == target:
            break
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        style = OBJECT_CLASSES[name]
        w, d, h = (lo + (hi - lo) * rng.random() for lo, hi in style.size_ranges)
        for _attempt in range(20):
            pose = _place(rng, style.placement, w, d, h, room, placed)
            if pose is not None:
                break
        else:
            continue
        quarter, lo, hi = pose
        placed.append((lo, hi))
        parts = object_parts(style.shape, w, d, h, rng)
        area = sum(2 * (s[0] * s[1] + s[0] * s[2] + s[1] * s[2]) for _, s, _, _ in parts)
        part_spacing = min(spacing, math.sqrt(area / MIN_OBJECT_VERTICES))
        instance_rgb = np.array(style.rgb) + rng.normal(0, style.rgb_std, 3)
        cos, sin = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter]
        centre = (lo + hi) / 2
        for part_centre, part_size, part_shape, rgb_offset in parts:
            verts, faces = box_mesh(part_size, part_spacing,
                                    'cylinder' if part_shape == 'cylinder' else 'box')
            verts = verts + part_centre
            if part_shape == 'sheet':  # folds along the width, within the object's depth
                amplitude = (d - SHEET_THICKNESS) / 2
                verts[:, 1] += amplitude * np.sin(verts[:, 0] * 2 * math.pi / FOLD_PERIOD)
            x, y = verts[:, 0], verts[:, 1]
            verts = np.stack([centre[0] + cos * x - sin * y, centre[1] + sin * x + cos * y,
                              lo[2] + verts[:, 2]], 1)
            meshes.append((verts, faces, instance_rgb + rgb_offset, len(objects)))
        objects.append(style.raw_category)

    offsets = np.cumsum([0] + [len(m[0]) for m in meshes])
    xyz = np.concatenate([m[0] for m in meshes])
    xyz = (xyz + rng.normal(0, noise, xyz.shape)).astype(np.float32)
    all_faces = np.concatenate([m[1] + o for m, o in zip(meshes, offsets)])
    rgb = np.concatenate([np.broadcast_to(m[2], (len(m[0]), 3)) for m in meshes])
    rgb = np.clip(rgb + rng.normal(0, VERTEX_COLOUR_STD, rgb.shape), 0, 255)
    rgb = rgb.round().astype(np.uint8)
    object_index = np.repeat([m[3] for m in meshes], np.diff(offsets))
    nyu40_of = {raw: nyu for raw, nyu, *_ in OBJECT_CLASSES.values()}
    nyu40_of.update({raw: nyu for raw, nyu, *_ in STRUCTURE_CLASSES.values()})
    nyu40 = np.array([nyu40_of[raw] for raw in objects], np.int64)[object_index]
    return dict(xyz=xyz, rgb=rgb, faces=all_faces, nyu40=nyu40, object_index=object_index,
                objects=objects)


def write_room(scene_dir, scene, room):
    """Write a room as ScanNet's raw files of ``scene`` in ``scene_dir``."""
    xyz, rgb, faces = room['xyz'], room['rgb'], room['faces']
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
              ('red', 'u1'), ('green', 'u1'), ('blue', 'u1'), ('alpha', 'u1')]
    vertex = np.empty(len(xyz), fields)
    for i, axis in enumerate('xyz'):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(('red', 'green', 'blue')):
        vertex[channel] = rgb[:, i]
    vertex['alpha'] = 255
    write_ply(scene_file(scene_dir, scene, MESH_SUFFIX), vertex, faces)
    labelled = np.empty(len(xyz), fields + [('label', '<u2')])
    for field, _ in fields:
        labelled[field] = vertex[field]
    labelled['label'] = room['nyu40']
    write_ply(scene_file(scene_dir, scene, LABELS_MESH_SUFFIX), labelled, faces)

    seg_indices = segment_mesh(torch.from_numpy(xyz), torch.from_numpy(faces)).numpy()
    segs_name = scene + SEGS_SUFFIX
    segs = dict(params=dict(kThresh='0.01', segMinVerts='20'), sceneId=scene,
                segIndices=seg_indices.tolist())
    atomic_write(os.path.join(scene_dir, segs_name), json.dumps(segs))
    groups = []
    for object_id, label in enumerate(room['objects']):
        segments = np.unique(seg_indices[room['object_index'] == object_id])
        groups.append(dict(id=object_id, objectId=object_id, segments=segments.tolist(),
                           label=label))
    aggregation = dict(sceneId=f'scannet.{scene}', appId='ikne_plugin.synthetic_scannet',
                       segGroups=groups, segmentsFile=f'scannet.{segs_name}')
    atomic_write(scene_file(scene_dir, scene, AGGREGATION_SUFFIX), json.dumps(aggregation))


def make_synthetic_scannet(out_dir, num_train, num_val, seed=0, spacing=0.09, noise=0.003,
                           progress=None):
    """Write ``num_train`` + ``num_val`` rooms (scene0000_00, ...) and the label map to ``out_dir``.

    ``progress`` wraps the scene iterable (e.g. ``tqdm``). Returns the scene names per split.
    """
    if num_train < 0 or num_val < 0 or spacing <= 0 or noise < 0:
        raise ValueError('expected num_train, num_val >= 0, spacing > 0 and noise >= 0; got '
                         f'{num_train}, {num_val}, {spacing}, {noise}')
    entries = [(raw, nyu, nyu_name) for raw, nyu, nyu_name, *_ in OBJECT_CLASSES.values()]
    entries += [(raw, nyu, nyu_name) for raw, nyu, nyu_name, _ in STRUCTURE_CLASSES.values()]
    write_label_map(os.path.join(out_dir, LABEL_MAP_FILE), sorted(entries))
    jobs = [('train', i) for i in range(num_train)]
    jobs += [('val', num_train + i) for i in range(num_val)]
    scenes = dict(train=[], val=[])
    for split, index in (progress or iter)(jobs):
        scene = f'scene{index:04d}_00'
        room = generate_room(np.random.default_rng([seed, index]), spacing, noise)
        write_room(os.path.join(out_dir, split), scene, room)
        scenes[split].append(scene)
    return scenes
