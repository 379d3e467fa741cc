"""The ScanNet converter: round trip on synthetic scenes, bad inputs, idempotence, interrupts."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from numpy.lib.recfunctions import repack_fields

from ikne_plugin.datasets import scannet_converter
from ikne_plugin.datasets.label_map import VALID_CLASS_IDS, read_label_map
from ikne_plugin.datasets.ply import read_ply
from ikne_plugin.datasets.scannet_converter import (convert_scannet, info_file, scene_outputs,
                                                    vertex_normals)
from ikne_plugin.datasets.scannet_raw import (AGGREGATION_SUFFIX, LABELS_MESH_SUFFIX,
                                              MESH_SUFFIX, SEGS_SUFFIX)
from ikne_plugin.datasets.synthetic_scannet import generate_room, make_synthetic_scannet
from ikne_plugin.ops import segment_mesh
from _tools import ROOT, load_tool

SPACING = 0.25  # coarse rooms (a few thousand vertices) keep the tests fast
SEED = 7


@pytest.fixture(scope='module')
def raw_root(tmp_path_factory):
    """Two train rooms, one val room and the val room's mesh as a test scene."""
    root = str(tmp_path_factory.mktemp('raw'))
    make_synthetic_scannet(root, 2, 1, seed=SEED, spacing=SPACING)
    os.makedirs(os.path.join(root, 'test'))
    shutil.copy(os.path.join(root, 'val', 'scene0002_00' + MESH_SUFFIX),
                os.path.join(root, 'test', 'scene0707_00' + MESH_SUFFIX))
    return root


@pytest.fixture(scope='module')
def converted(raw_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('out'))
    num_scenes, failures = convert_scannet(raw_root, out, progress=False)
    assert (num_scenes, failures) == (4, [])
    return out


def _copy_root(raw_root, tmp_path):
    copy = str(tmp_path / 'raw')
    shutil.copytree(raw_root, copy)
    return copy


def _read_outputs(out, split, scene):
    paths = scene_outputs(out, split, scene)
    data = {k: np.fromfile(p, np.float32 if k == 'pts' else np.int64)
            for k, p in paths.items() if k != 'val_gt'}
    data['pts'] = data['pts'].reshape(-1, 9)
    if 'val_gt' in paths:
        data['val_gt'] = np.loadtxt(paths['val_gt'], dtype=np.int64)
    return data


@pytest.mark.parametrize('split,scene,index', [('train', 'scene0000_00', 0),
                                               ('train', 'scene0001_00', 1),
                                               ('val', 'scene0002_00', 2)])
def test_round_trip_matches_generated_room(raw_root, converted, split, scene, index):
    room = generate_room(np.random.default_rng([SEED, index]), SPACING)
    data = _read_outputs(converted, split, scene)
    points = data['pts']
    assert points.shape == (len(room['xyz']), 9)
    np.testing.assert_array_equal(points[:, :3], room['xyz'])
    np.testing.assert_array_equal(points[:, 3:6], room['rgb'].astype(np.float32))
    # semantic labels went generator -> aggregation labels -> label map; compare with the
    # generator's own per-vertex NYU40 ids (also stored in labels.ply)
    np.testing.assert_array_equal(data['pts_semantic_mask'], room['nyu40'])
    labels_ply, _ = read_ply(os.path.join(raw_root, split, scene + LABELS_MESH_SUFFIX))
    np.testing.assert_array_equal(data['pts_semantic_mask'], labels_ply['label'])
    np.testing.assert_array_equal(data['pts_instance_mask'], room['object_index'] + 1)
    with open(os.path.join(raw_root, split, scene + SEGS_SUFFIX)) as f:
        np.testing.assert_array_equal(data['sp_pts_mask'], json.load(f)['segIndices'])


def test_val_gt_is_benchmark_encoding(converted):
    data = _read_outputs(converted, 'val', 'scene0002_00')
    semantic, instance = data['pts_semantic_mask'], data['pts_instance_mask']
    expected = np.array([s * 1000 + i if s in VALID_CLASS_IDS and i > 0 else 0
                         for s, i in zip(semantic.tolist(), instance.tolist())])
    np.testing.assert_array_equal(data['val_gt'], expected)
    assert (expected > 0).any() and (expected == 0).any()  # walls/floor are 0


def test_normals_are_area_weighted_sums(converted):
    data = _read_outputs(converted, 'train', 'scene0000_00')
    room = generate_room(np.random.default_rng([SEED, 0]), SPACING)
    p, faces = room['xyz'].astype(np.float64), room['faces']
    expected = np.zeros_like(p)
    for face in faces[:2000]:  # an explicit loop over a prefix of the faces as the oracle
        a, b, c = p[face]
        expected[face] += np.cross(b - a, c - a)
    partial = vertex_normals(room['xyz'], faces[:2000])
    touched = np.linalg.norm(expected, axis=1) > 0
    np.testing.assert_allclose(partial[touched], (expected / np.linalg.norm(
        expected, axis=1, keepdims=True))[touched], atol=1e-5)
    normals = data['pts'][:, 6:]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)
    floor = data['pts_instance_mask'] == 1  # object 0 is the floor, a horizontal sheet
    assert np.abs(normals[floor, 2]).mean() > 0.99


def test_infos(converted):
    for split, scenes in (('train', ['scene0000_00', 'scene0001_00']), ('val', ['scene0002_00']),
                          ('test', ['scene0707_00'])):
        with open(info_file(converted, split), 'rb') as f:
            infos = pickle.load(f)
        assert infos['metainfo']['dataset'] == 'ScanNet'
        assert infos['metainfo']['info_version'] == '1.1'
        assert [i['sample_idx'] for i in infos['data_list']] == scenes
        for info in infos['data_list']:
            sp = np.fromfile(os.path.join(converted, 'super_points', info['super_pts_path']),
                             np.int64)
            assert info['num_points'] == len(sp) and info['num_superpoints'] == len(np.unique(sp))
            assert info['lidar_points'] == dict(num_pts_feats=9,
                                                lidar_path=info['sample_idx'] + '.bin')
            assert ('pts_semantic_mask_path' in info) == (split != 'test')
            assert ('pts_instance_mask_path' in info) == (split != 'test')


def test_test_split_superpoints_come_from_segment_mesh(raw_root, converted):
    data = _read_outputs(converted, 'test', 'scene0707_00')
    assert set(data) == {'pts', 'sp_pts_mask'}
    vertex, faces = read_ply(os.path.join(raw_root, 'test', 'scene0707_00' + MESH_SUFFIX))
    xyz = np.stack([vertex['x'], vertex['y'], vertex['z']], 1)
    expected = segment_mesh(torch.from_numpy(xyz), torch.from_numpy(faces)).numpy()
    np.testing.assert_array_equal(data['sp_pts_mask'], expected)


def test_idempotent_and_overwrite(raw_root, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    assert convert_scannet(raw_root, out, progress=False)[1] == []
    before = {p: os.stat(p).st_mtime_ns for p in scene_outputs(out, 'val', 'scene0002_00').values()}

    def fail(*args):
        raise AssertionError('a finished scene was read again')
    monkeypatch.setattr(scannet_converter, 'read_mesh', fail)
    assert convert_scannet(raw_root, out, progress=False)[1] == []
    assert {p: os.stat(p).st_mtime_ns for p in before} == before
    failures = convert_scannet(raw_root, out, overwrite=True, progress=False)[1]
    assert len(failures) == 4 and all('a finished scene was read again' in f for f in failures)


def test_interrupted_run_leaves_whole_files_and_resumes(raw_root, converted, tmp_path,
                                                        monkeypatch):
    out = str(tmp_path / 'out')
    real_replace = os.replace
    renamed = []

    def replace_then_die(src, dst):
        if len(renamed) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the third file is written, before its rename
        renamed.append(dst)
        real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        convert_scannet(raw_root, out, progress=False)
    monkeypatch.undo()
    written = [os.path.join(root, p) for root, _, files in os.walk(out) for p in files]
    assert sorted(written) == sorted(renamed)  # no temporary or partial file is left
    assert convert_scannet(raw_root, out, progress=False)[1] == []
    for split, scene in (('train', 'scene0000_00'), ('val', 'scene0002_00')):
        reference = scene_outputs(converted, split, scene)
        for key, path in scene_outputs(out, split, scene).items():
            with open(path, 'rb') as f, open(reference[key], 'rb') as g:
                assert f.read() == g.read()


def _corrupt(root, scene_dir, scene, case):
    mesh = os.path.join(scene_dir, scene + MESH_SUFFIX)
    segs = os.path.join(scene_dir, scene + SEGS_SUFFIX)
    agg = os.path.join(scene_dir, scene + AGGREGATION_SUFFIX)
    if case == 'truncated_ply':
        with open(mesh, 'rb') as f:
            data = f.read()
        with open(mesh, 'wb') as f:
            f.write(data[:len(data) // 2])
        return mesh, 'truncated'
    if case == 'garbage_ply':
        with open(mesh, 'wb') as f:
            f.write(b'not a mesh at all')
        return mesh, 'not a PLY'
    if case == 'bad_json':
        with open(segs, 'w') as f:
            f.write('{"segIndices": [1, 2,')
        return segs, 'invalid JSON'
    if case == 'missing_segment':
        with open(agg) as f:
            data = json.load(f)
        data['segGroups'][-1]['segments'].append(10 ** 9)
        with open(agg, 'w') as f:
            json.dump(data, f)
        return agg, 'lacks'
    if case == 'unknown_label':
        with open(agg) as f:
            data = json.load(f)
        data['segGroups'][-1]['label'] = 'flux capacitor'
        with open(agg, 'w') as f:
            json.dump(data, f)
        return agg, 'flux capacitor'
    vertex, faces = read_ply(mesh)
    vertex = vertex.copy()
    if case == 'nan_coordinates':
        vertex['y'][5] = np.nan
        message = 'NaN'
    elif case == 'no_colours':
        vertex = repack_fields(vertex[['x', 'y', 'z']])
        message = "vertex properties ['red', 'green', 'blue'] missing"
    else:  # no vertices
        vertex, faces = vertex[:0], faces[:0]
        message = 'has no points'
    from ikne_plugin.datasets.ply import write_ply
    write_ply(mesh, vertex, faces)
    return mesh, message


@pytest.mark.parametrize('case', ['truncated_ply', 'garbage_ply', 'bad_json', 'missing_segment',
                                  'unknown_label', 'nan_coordinates', 'no_colours',
                                  'no_vertices'])
def test_bad_scene_is_reported_and_others_finish(raw_root, tmp_path, capsys, case):
    root = _copy_root(raw_root, tmp_path)
    bad_file, message = _corrupt(root, os.path.join(root, 'train'), 'scene0001_00', case)
    out = str(tmp_path / 'out')
    assert load_tool('create_data').main(['scannet', '--root', root, '--out', out]) == 1
    err = capsys.readouterr().err
    assert '1 of 4 scenes failed' in err
    assert 'train/scene0001_00' in err and bad_file in err and message in err
    with open(info_file(out, 'train'), 'rb') as f:
        assert [i['sample_idx'] for i in pickle.load(f)['data_list']] == ['scene0000_00']
    assert os.path.isfile(scene_outputs(out, 'val', 'scene0002_00')['val_gt'])
    assert not os.path.exists(scene_outputs(out, 'train', 'scene0001_00')['pts'])


def test_parallel_workers_give_the_same_files(raw_root, converted, tmp_path):
    out = str(tmp_path / 'out')
    assert load_tool('create_data').main(['scannet', '--root', raw_root, '--out', out, '--workers', '2']) == 0
    for key, path in scene_outputs(out, 'train', 'scene0001_00').items():
        with open(path, 'rb') as f, open(scene_outputs(converted, 'train', 'scene0001_00')[key],
                                         'rb') as g:
            assert f.read() == g.read()


def test_duplicated_seg_groups_of_scene0217_00(raw_root, converted, tmp_path):
    """scene0217_00's aggregation lists every object twice; instances must not double."""
    root = _copy_root(raw_root, tmp_path)
    agg = os.path.join(root, 'train', 'scene0000_00' + AGGREGATION_SUFFIX)
    with open(agg) as f:
        data = json.load(f)
    n = len(data['segGroups'])
    data['segGroups'] += [dict(g, id=g['id'] + n, objectId=g['objectId'] + n)
                          for g in data['segGroups']]
    with open(agg, 'w') as f:
        json.dump(data, f)
    out = str(tmp_path / 'out')
    assert convert_scannet(root, out, progress=False)[1] == []
    for key in ('pts_instance_mask', 'pts_semantic_mask'):
        np.testing.assert_array_equal(_read_outputs(out, 'train', 'scene0000_00')[key],
                                      _read_outputs(converted, 'train', 'scene0000_00')[key])


def test_missing_label_map_and_empty_root(raw_root, tmp_path):
    root = _copy_root(raw_root, tmp_path)
    os.remove(os.path.join(root, 'scannetv2-labels.combined.tsv'))
    with pytest.raises(FileNotFoundError, match='scannetv2-labels.combined.tsv'):
        convert_scannet(root, str(tmp_path / 'out'), progress=False)
    with pytest.raises(FileNotFoundError, match='no scenes'):
        convert_scannet(str(tmp_path / 'empty'), str(tmp_path / 'out'), progress=False)


def test_official_label_map_reads():
    label_map = read_label_map(os.path.join(ROOT, 'tests', 'data',
                                            'scannetv2-labels.combined.tsv'))
    assert len(label_map) == 607
    assert label_map['wall'] == 1 and label_map['office chair'] == 5
    assert label_map['kitchen counter'] == 12 and label_map['trash can'] == 39
