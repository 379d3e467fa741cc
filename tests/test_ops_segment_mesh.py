"""Tests of ``ikne_plugin.ops.segment_mesh``, ScanNet's mesh segmentator.

The real mesh (scene0470_00) is checked against the partition the official ScanNet
Segmentator produced on it (``scene0470_00_official_segs.npy``: its segIndices, built from
ScanNet's Segmentator/segmentator.cpp with kThresh 0.01, segMinVerts 20: 371 segments).
The C++ kernel is checked id for id against the numpy reference on that mesh and on
random ones, and the reference's vertex normals against a float64 mean of face normals.
"""
import gzip
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ikne_plugin.datasets.ply import read_ply
from ikne_plugin.ops.ext_loader import load_ext
from ikne_plugin.ops.segment_mesh import segment_mesh, segment_mesh_reference

# the module itself (ikne_plugin.ops re-exports a function of the same name)
segment_mesh_module = importlib.import_module('ikne_plugin.ops.segment_mesh')

DATA = Path(__file__).parent / 'data'
requires_ext = pytest.mark.skipif(load_ext() is None, reason='ikne_plugin._ext is not built')


def same_partition(ids_a, ids_b):
    """True if the two labelings group the vertices identically (ids may differ)."""
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    pairs = np.unique(np.stack([ids_a, ids_b], axis=1), axis=0)
    return len(pairs) == len(np.unique(ids_a)) == len(np.unique(ids_b))


def assert_root_ids(ids):
    """Ids follow the official convention: each segment is named by one of its vertices."""
    ids = ids.numpy()
    assert ids.dtype == np.int64
    assert (ids[ids] == ids).all()


def height_field_mesh(rng, n=24, flat=False):
    """A triangulated n x n height field with creases and noise, faces and corners shuffled."""
    x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing='ij')
    z = np.zeros_like(x) if flat else (
        0.3 * np.abs(x - 0.5) + 0.2 * np.maximum(y - 0.6, 0) + 0.01 * rng.standard_normal(x.shape))
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    faces = np.roll(faces[rng.permutation(len(faces))], rng.integers(3), axis=1)
    return torch.from_numpy(vertices.astype(np.float32)), torch.from_numpy(faces)


@pytest.fixture(scope='module')
def real_mesh(tmp_path_factory):
    """scene0470_00_vh_clean_2.ply (stored gzip'd) as float32 vertices and int64 faces."""
    path = tmp_path_factory.mktemp('mesh') / 'scene0470_00_vh_clean_2.ply'
    path.write_bytes(gzip.decompress((DATA / 'scene0470_00_vh_clean_2.ply.gz').read_bytes()))
    vertex, faces = read_ply(path)
    vertices = np.stack([vertex['x'], vertex['y'], vertex['z']], axis=1)
    return torch.from_numpy(vertices), torch.from_numpy(faces)


@requires_ext
def test_real_mesh_matches_official_segmentator(real_mesh):
    vertices, faces = real_mesh
    assert vertices.shape == (67465, 3) and faces.shape == (127003, 3)
    official = np.load(DATA / 'scene0470_00_official_segs.npy')
    ids = segment_mesh(vertices, faces, k_thresh=0.01, seg_min_verts=20)
    assert len(np.unique(ids.numpy())) == 371
    assert same_partition(ids, official)
    assert_root_ids(ids)
    reference = segment_mesh_reference(vertices, faces, 0.01, 20)
    assert torch.equal(ids, reference)


def test_reference_normals_are_the_mean_of_unit_face_normals():
    """Running-average blending = plain mean of the unit face normals (not area-weighted)."""
    vertices, faces = height_field_mesh(np.random.default_rng(0), n=12)
    normals = segment_mesh_module._vertex_normals(vertices.numpy(), faces.numpy())
    p = vertices.double().numpy()[faces.numpy()]
    face_normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    face_normals /= np.linalg.norm(face_normals, axis=1, keepdims=True)
    expected = np.zeros((len(vertices), 3))
    np.add.at(expected, faces.numpy().reshape(-1), np.repeat(face_normals, 3, axis=0))
    expected /= np.bincount(faces.numpy().reshape(-1))[:, None]
    np.testing.assert_allclose(normals, expected, atol=1e-6)


@requires_ext
@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('k_thresh,seg_min_verts', [(0.01, 20), (0.002, 0), (0.05, 5)])
def test_kernel_equals_reference_on_height_fields(seed, k_thresh, seg_min_verts):
    vertices, faces = height_field_mesh(np.random.default_rng(seed))
    ids = segment_mesh(vertices, faces, k_thresh, seg_min_verts)
    assert torch.equal(ids, segment_mesh_reference(vertices, faces, k_thresh, seg_min_verts))
    assert_root_ids(ids)
    if seg_min_verts == 0:  # the creases of the height field must cut it into pieces
        assert len(ids.unique()) > 1


@requires_ext
@pytest.mark.parametrize('seed', range(3))
def test_kernel_equals_reference_on_triangle_soup(seed):
    """Random triangles over few vertices: many duplicate edges and varied weights."""
    rng = np.random.default_rng(seed)
    vertices = torch.from_numpy(rng.standard_normal((150, 3)).astype(np.float32))
    faces = torch.from_numpy(np.stack([rng.choice(150, 3, replace=False) for _ in range(400)]))
    for k_thresh, seg_min_verts in [(0.5, 0), (0.5, 8), (2.0, 3)]:
        ids = segment_mesh(vertices, faces.int(), k_thresh, seg_min_verts)
        assert torch.equal(ids, segment_mesh_reference(vertices, faces, k_thresh, seg_min_verts))


@requires_ext
def test_ties_are_broken_by_edge_order():
    """A flat grid has all weights exactly 0: kernel and reference order ties alike (stably)."""
    vertices, faces = height_field_mesh(np.random.default_rng(0), flat=True)
    for seg_min_verts in (0, 20):
        ids = segment_mesh(vertices, faces, 0.01, seg_min_verts)
        assert torch.equal(ids, segment_mesh_reference(vertices, faces, 0.01, seg_min_verts))
        assert len(ids.unique()) == 1


def test_fold_splits_into_its_two_planes():
    """Two flat strips meeting at a concave right angle: the fold edges weigh 1, far above k."""
    x, y = np.meshgrid(np.arange(6.0), np.arange(4.0), indexing='ij')
    floor = np.stack([x, y, np.zeros_like(x)], -1).reshape(-1, 3)
    wall = np.stack([np.zeros_like(x[1:]), y[1:], x[1:]], -1).reshape(-1, 3)  # shares x = 0 row
    vertices = torch.from_numpy(np.concatenate([floor, wall]).astype(np.float32))
    floor_index = np.arange(24).reshape(6, 4)
    wall_index = np.concatenate([floor_index[:1], 24 + np.arange(20).reshape(5, 4)])
    faces = []
    for index, flip in ((floor_index, False), (wall_index, True)):
        a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
        quads = [np.stack([a, b, c], -1), np.stack([a, c, d], -1)]
        faces += [q[..., ::-1] if flip else q for q in quads]  # both normals face the inside
    faces = torch.from_numpy(np.concatenate([f.reshape(-1, 3) for f in faces]).copy())
    ids = segment_mesh_reference(vertices, faces, 0.01, 0).numpy()
    floor_ids, wall_ids = set(ids[4:24]), set(ids[24:])  # away from the shared row
    assert len(floor_ids) == 1 and len(wall_ids) == 1 and floor_ids != wall_ids
    if load_ext() is not None:
        assert torch.equal(segment_mesh(vertices, faces, 0.01, 0), torch.from_numpy(ids))


@pytest.mark.parametrize('use_ext', [False, pytest.param(True, marks=requires_ext)])
def test_degenerate_faces_neither_poison_nor_change_the_result(use_ext):
    """Zero-area faces give the official tool NaN normals; here they are skipped."""
    run = segment_mesh if use_ext else segment_mesh_reference
    vertices, faces = height_field_mesh(np.random.default_rng(1), n=10)
    clean = run(vertices, faces, 0.01, 5)
    a, b, c = faces[0].tolist()
    far = len(vertices)  # a new vertex at the position of `a`, only in degenerate faces
    vertices_plus = torch.cat([vertices, vertices[a:a + 1]])
    # repeated indices and a coincident point; edges among old vertices only repeat
    # existing ones in the same direction, so the old partition must stay as it was
    degenerate = torch.tensor([[a, b, a], [c, b, c], [a, far, b]])
    ids = run(vertices_plus, torch.cat([faces, degenerate]), 0.01, 5)
    assert_root_ids(ids)
    # the old vertices keep their partition; the new one joins a neighbour's segment
    assert same_partition(ids[:far], clean)
    assert ids[far] in (ids[a], ids[b])
    assert torch.equal(ids, run(vertices_plus, torch.cat([faces, degenerate]), 0.01, 5))


def test_fallback_without_extension_matches(monkeypatch):
    vertices, faces = height_field_mesh(np.random.default_rng(2), n=8)
    expected = segment_mesh_reference(vertices, faces, 0.02, 3)
    monkeypatch.setattr(segment_mesh_module, 'load_ext', lambda: None)
    assert torch.equal(segment_mesh(vertices, faces, 0.02, 3), expected)


@pytest.mark.parametrize('run', [segment_mesh, segment_mesh_reference])
def test_edge_cases(run):
    vertices = torch.rand(5, 3, dtype=torch.float64)
    no_faces = torch.zeros(0, 3, dtype=torch.int64)
    assert torch.equal(run(vertices, no_faces), torch.arange(5))
    assert run(torch.zeros(0, 3), no_faces).shape == (0,)
    # float64 input is read as float32, like the tool reads its PLY
    vertices, faces = height_field_mesh(np.random.default_rng(3), n=6)
    assert torch.equal(run(vertices.double(), faces, 0.01, 4), run(vertices, faces, 0.01, 4))


@pytest.mark.parametrize('vertices,faces,kwargs,error,match', [
    (np.zeros((3, 3), np.float32), torch.tensor([[0, 1, 2]]), {}, TypeError, 'vertices must be a torch.Tensor'),
    (torch.zeros(3, 3, dtype=torch.int32), torch.tensor([[0, 1, 2]]), {}, TypeError, 'vertices must be float32'),
    (torch.zeros(3, 2), torch.tensor([[0, 1, 2]]), {}, ValueError, r'vertices must be \[V, 3\]'),
    (torch.zeros(3, 3), torch.tensor([[0.0, 1, 2]]), {}, TypeError, 'faces must be int32 or int64'),
    (torch.zeros(3, 3), torch.tensor([[0, 1, 2, 0]]), {}, ValueError, r'faces must be \[F, 3\]'),
    (torch.zeros(3, 3), torch.tensor([[0, 1, 3]]), {}, ValueError, r'faces must lie in \[0, 3\)'),
    (torch.zeros(3, 3), torch.tensor([[-1, 1, 2]]), {}, ValueError, r'faces must lie in \[0, 3\)'),
    (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, float('nan'), 0]]), torch.tensor([[0, 1, 2]]), {},
     ValueError, 'vertices must be finite'),
    (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1e39, 0]], dtype=torch.float64), torch.tensor([[0, 1, 2]]),
     {}, ValueError, 'vertices must be finite'),
    (torch.zeros(3, 3, device='meta'), torch.tensor([[0, 1, 2]]), {}, ValueError, 'must be a CPU tensor'),
    (torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), {'k_thresh': 0.0}, ValueError, 'k_thresh must be > 0'),
    (torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), {'seg_min_verts': -1}, ValueError, 'seg_min_verts must be'),
    (torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), {'seg_min_verts': 2.5}, ValueError, 'seg_min_verts must be'),
])
@pytest.mark.parametrize('run', [segment_mesh, segment_mesh_reference])
def test_bad_input_raises_clear_errors(run, vertices, faces, kwargs, error, match):
    with pytest.raises(error, match=match):
        run(vertices, faces, **kwargs)
