"""Synthetic ScanNet-format rooms: determinism, room statistics, meshes, raw-file format."""
import json
import os

import numpy as np
import pytest
import torch

from ikne_plugin.datasets.label_map import LABEL_MAP_FILE, VALID_CLASS_IDS, read_label_map
from ikne_plugin.datasets.ply import read_ply
from ikne_plugin.datasets.scannet_raw import (AGGREGATION_SUFFIX, LABELS_MESH_SUFFIX,
                                              MESH_SUFFIX, SEGS_SUFFIX, read_aggregation,
                                              read_mesh, read_segs)
from ikne_plugin.datasets.synthetic_scannet import (OBJECT_CLASSES, box_mesh, generate_room,
                                                    make_synthetic_scannet)
from ikne_plugin.ops import segment_mesh

OFFICIAL_LABEL_MAP = os.path.join(os.path.dirname(__file__), 'data', LABEL_MAP_FILE)


def _files(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_same_seed_gives_byte_identical_files(tmp_path):
    make_synthetic_scannet(str(tmp_path / 'a'), 1, 1, seed=3, spacing=0.3)
    make_synthetic_scannet(str(tmp_path / 'b'), 1, 1, seed=3, spacing=0.3)
    make_synthetic_scannet(str(tmp_path / 'c'), 1, 1, seed=4, spacing=0.3)
    a, b, c = (_files(str(tmp_path / x)) for x in 'abc')
    assert len(a) == 1 + 2 * 4  # label map + 4 files per room
    assert a == b
    assert a.keys() == c.keys() and a != c


@pytest.mark.parametrize('seed', range(6))
def test_default_room_statistics(seed):
    room = generate_room(np.random.default_rng([seed, 0]))
    assert 12_000 <= len(room['xyz']) <= 40_000
    objects = room['objects']
    assert objects[0] == 'floor' and objects[1:5] == ['wall'] * 4
    assert 5 <= len(objects) - 5 <= 30
    counts = np.bincount(room['object_index'], minlength=len(objects))
    assert counts.min() >= 100  # the benchmark ignores instances under 100 vertices
    extent = room['xyz'].max(0) - room['xyz'].min(0)
    assert (extent[:2] > 3.9).all() and (extent[:2] < 7.1).all()
    assert room['faces'].min() >= 0 and room['faces'].max() < len(room['xyz'])


@pytest.mark.parametrize('seed', range(4))
def test_objects_do_not_overlap(seed):
    room = generate_room(np.random.default_rng([seed, 1]), spacing=0.15, noise=0.0)
    boxes = [(room['xyz'][room['object_index'] == i].min(0),
              room['xyz'][room['object_index'] == i].max(0))
             for i in range(5, len(room['objects']))]
    for i, (lo_a, hi_a) in enumerate(boxes):
        for lo_b, hi_b in boxes[i + 1:]:
            overlap = np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b)
            assert (overlap < 1e-4).any(), 'two objects overlap'


def test_class_styles_are_distinct_and_map_like_scannet():
    official = read_label_map(OFFICIAL_LABEL_MAP)
    nyu40_ids = set()
    for raw, nyu40, *_ in OBJECT_CLASSES.values():
        assert official[raw] == nyu40, raw  # raw categories mean what they mean in ScanNet
        nyu40_ids.add(nyu40)
    assert set(VALID_CLASS_IDS) <= nyu40_ids  # every evaluated class can appear
    colours = np.array([style.rgb for style in OBJECT_CLASSES.values()])
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=2)
    shapes = [style.shape for style in OBJECT_CLASSES.values()]
    same_shape = np.array([[a == b for b in shapes] for a in shapes])
    np.fill_diagonal(same_shape, False)
    assert (distances[same_shape] > 30).all()  # classes of one shape differ in colour


@pytest.mark.parametrize('shape', ['box', 'cylinder'])
def test_box_mesh_is_closed_and_outward(shape):
    size = np.array([0.7, 0.4, 1.1])
    verts, faces = box_mesh(size, 0.1, shape)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # every edge has exactly two faces: closed and manifold
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    volume = np.einsum('ij,ij->i', a, np.cross(b, c)).sum() / 6  # > 0 iff faces point outward
    expected = size.prod() * (np.pi / 4 if shape == 'cylinder' else 1)
    assert volume == pytest.approx(expected, rel=0.05)
    assert len(np.unique(verts, axis=0)) == len(verts)


def test_raw_files_are_consistent(tmp_path):
    root = str(tmp_path)
    scenes = make_synthetic_scannet(root, 1, 1, seed=11, spacing=0.2)
    assert scenes == dict(train=['scene0000_00'], val=['scene0001_00'])
    label_map = read_label_map(os.path.join(root, LABEL_MAP_FILE))
    scene_dir = os.path.join(root, 'val')
    xyz, rgb, faces = read_mesh(os.path.join(scene_dir, 'scene0001_00' + MESH_SUFFIX))
    labels, labels_faces = read_ply(os.path.join(scene_dir, 'scene0001_00' + LABELS_MESH_SUFFIX))
    np.testing.assert_array_equal(labels_faces, faces)
    np.testing.assert_array_equal(np.stack([labels['x'], labels['y'], labels['z']], 1), xyz)
    segs_path = os.path.join(scene_dir, 'scene0001_00' + SEGS_SUFFIX)
    seg = read_segs(segs_path, len(xyz))
    expected = segment_mesh(torch.from_numpy(xyz), torch.from_numpy(faces)).numpy()
    np.testing.assert_array_equal(seg, expected)
    objects = read_aggregation(os.path.join(scene_dir, 'scene0001_00' + AGGREGATION_SUFFIX))
    owner = {}
    for object_id, label, segments in objects:
        for s in segments:
            assert s not in owner, 'a superpoint belongs to two objects'
            owner[s] = object_id
        vertices = np.isin(seg, segments)
        assert (labels['label'][vertices] == label_map[label]).all()
    assert set(owner) == set(seg.tolist())  # every vertex belongs to an object
    assert sum(label == 'wall' for _, label, _ in objects) == 4
    with open(segs_path) as f:
        assert json.load(f)['sceneId'] == 'scene0001_00'


def test_bad_arguments():
    with pytest.raises(ValueError, match='spacing'):
        make_synthetic_scannet('/nonexistent', 1, 1, spacing=0)
