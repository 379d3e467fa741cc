"""tools/infer.py on one's own scene: ScanNet mesh, converted scene, bare point cloud, and bad
input (empty file, no colours, NaN coordinates, 3 points, 5 million points)."""
import gzip
import json
import os
import pickle
import resource

import matplotlib.image
import numpy as np
import pytest
from plyfile import PlyData

from _tools import (CONFIG, ROOT, make_data_root, one_thread, run_tool,  # noqa: F401
                    tiny_options)
from ikne_plugin.datasets.ply import read_ply, write_ply
from ikne_plugin.datasets.scene_input import (load_scene, subsample, voxel_cells,
                                              voxel_superpoints)

MESH_GZ = os.path.join(ROOT, 'tests', 'data', 'scene0470_00_vh_clean_2.ply.gz')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data_root(tmp_path_factory)


@pytest.fixture(scope='module')
def model(data_root, tmp_path_factory):
    """A tiny model trained one iteration: ``(config, checkpoint, options)``. Every (query,
    class) pair is kept (score_thr, min_points), so predictions are never empty."""
    folder = tmp_path_factory.mktemp('model')
    config = folder / 'tiny.py'
    config.write_text(f'_base_ = [{CONFIG!r}]\n' + '\n'.join(
        ['model = dict(backbone=dict(channels=(8, 16, 24)), head=dict(in_channels=8, d_model=16,',
         '    num_heads=2, ffn_dim=32, num_layers=3, num_queries=12, min_points=0,',
         '    score_thr=-1000, criterion=dict(isg_loss=dict(rank=4))))']) + '\n')
    options = tiny_options(data_root, 1, 'model.head.num_layers=3')  # the config's sizes
    run_tool('train', config, '--work-dir', folder, *options)
    return config, folder / 'epoch_1.pth', options


def infer(model, scene, out_dir, *args):
    """Run tools/infer.py; return its JSON summary and the output PLY's vertices and faces."""
    config, checkpoint, _ = model
    run_tool('infer', config, checkpoint, scene, '--out-dir', out_dir, '--score-thr', -1000,
             *args)
    name = os.path.basename(str(scene)).split('.')[0]
    stem = os.path.join(out_dir, name + '_instances')
    with open(stem + '.json') as f:
        summary = json.load(f)
    vertex, faces = read_ply(stem + '.ply')
    image = matplotlib.image.imread(stem + '.png')
    assert image.shape[1] > 1.5 * image.shape[0]  # two views side by side
    return summary, vertex, faces


def check_consistent(summary, vertex):
    """Each vertex's instance is one of the JSON's, of its label, inside its box; instances
    are listed best first."""
    instances = summary['instances']
    assert [i['id'] for i in instances] == list(range(len(instances)))
    scores = [i['score'] for i in instances]
    assert scores == sorted(scores, reverse=True)
    ids = vertex['instance'].astype(np.int64)
    assert len(ids) == summary['num_points'] and ids.min() >= -1 and ids.max() < len(instances)
    label_of = np.array([i['label_index'] for i in instances] + [-1])
    np.testing.assert_array_equal(vertex['label'], label_of[ids])
    assigned = np.bincount(ids + 1, minlength=len(instances) + 1)[1:]
    assert (assigned <= [i['num_points'] for i in instances]).all()
    xyz = np.stack([vertex['x'], vertex['y'], vertex['z']], 1)
    box_min = np.array([i['box_min'] for i in instances] + [[-np.inf] * 3])
    box_max = np.array([i['box_max'] for i in instances] + [[np.inf] * 3])
    assert (xyz >= box_min[ids] - 1e-3).all() and (xyz <= box_max[ids] + 1e-3).all()


def point_cloud(path, xyz, rgb=None):
    """Write a bare point cloud (no faces) as binary PLY."""
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')] if rgb is not None else []
    vertex = np.empty(len(xyz), fields)
    for i, axis in enumerate('xyz'):
        vertex[axis] = xyz[:, i]
    if rgb is not None:
        for i, channel in enumerate(('red', 'green', 'blue')):
            vertex[channel] = rgb[:, i]
    write_ply(path, vertex, np.zeros((0, 3), np.int64))
    return path


def test_scannet_mesh(model, tmp_path, capsys):
    """The real scene0470_00 mesh: superpoints from segment_mesh, a PLY with the mesh's faces
    and per-vertex instance ids that MeshLab/Open3D-style readers (plyfile) load."""
    mesh = tmp_path / 'scene0470_00_vh_clean_2.ply'
    mesh.write_bytes(gzip.decompress(open(MESH_GZ, 'rb').read()))
    summary, vertex, faces = infer(model, mesh, tmp_path / 'out')
    _, input_faces = read_ply(mesh)
    assert summary['superpoints'] == 'segment_mesh' and summary['num_points'] == 67465
    assert len(summary['instances']) > 0
    np.testing.assert_array_equal(faces, input_faces)
    check_consistent(summary, vertex)
    ply = PlyData.read(str(tmp_path / 'out' / 'scene0470_00_vh_clean_2_instances.ply'))
    assert {'x', 'red', 'instance', 'label'} <= {p.name for p in ply['vertex'].properties}
    assert ply['face'].count == len(input_faces)
    assert 'superpoints (segment_mesh): 371' in capsys.readouterr().out  # the progress lines


def test_converted_scene_gives_tools_test_predictions(model, data_root, tmp_path):
    """On a converter points/*.bin (its super_points/ found beside it), infer.py's instances
    are those tools/test.py predicts for the same scene: the same pipeline builds the inputs."""
    config, checkpoint, options = model
    out = tmp_path / 'predictions.pkl'
    run_tool('test', config, checkpoint, '--work-dir', tmp_path, '--out', out, *options)
    with open(out, 'rb') as f:
        sample = pickle.load(f)[0]
    pred = sample['pred_pts_seg']
    expected = sorted(zip(pred['instance_scores'].tolist(), pred['instance_labels'].tolist(),
                          pred['pts_instance_mask'].sum(1).tolist()), reverse=True)
    scene = os.path.join(data_root, 'points', sample['scene_name'] + '.bin')
    summary, vertex, _ = infer(model, scene, tmp_path / 'out')
    assert summary['superpoints'] == 'given'
    got = [(i['score'], i['label_index'], i['num_points']) for i in summary['instances']]
    assert len(got) == len(expected) > 10
    assert [(round(s, 4), label, n) for s, label, n in expected] == got
    check_consistent(summary, vertex)


def test_point_cloud_without_colours(model, tmp_path, capsys):
    """Handled: a warning names the file, grey is used; voxel-grid superpoints."""
    xyz = np.random.default_rng(0).uniform(0, 3, (3000, 3)).astype(np.float32)
    scene = point_cloud(tmp_path / 'bare.ply', xyz)
    summary, vertex, faces = infer(model, scene, tmp_path / 'out', '--superpoint-size', 0.5)
    assert f'warning: {scene} has no vertex colours' in capsys.readouterr().out
    assert summary['superpoints'] == 'voxel grid 0.5 m' and len(faces) == 0
    check_consistent(summary, vertex)


def test_three_point_scene(model, tmp_path):
    """Handled: a scene of 3 points runs through the model and gives consistent outputs."""
    scene = point_cloud(tmp_path / 'three.ply', np.eye(3, dtype=np.float32),
                        np.full((3, 3), 200))
    summary, vertex, _ = infer(model, scene, tmp_path / 'out')
    assert summary['num_points'] == len(vertex) == 3
    check_consistent(summary, vertex)


@pytest.mark.parametrize('case', ['empty file', 'nan', 'inf', 'not a ply', 'unknown type',
                                  'missing', 'points bin truncated'])
def test_bad_input_is_refused_with_the_file_and_the_problem(model, tmp_path, case):
    xyz = np.zeros((10, 3), np.float32)
    rgb = np.zeros((10, 3))
    scene, problem = tmp_path / 'bad.ply', None
    if case == 'empty file':
        scene.write_bytes(b'')
        problem = 'empty file'
    elif case in ('nan', 'inf'):
        xyz[4, 1] = np.nan if case == 'nan' else np.inf
        point_cloud(scene, xyz, rgb)
        problem = '1 of 10 points have NaN or infinite coordinates'
    elif case == 'not a ply':
        scene.write_text('solid cube\n')
        problem = 'not a PLY file'
    elif case == 'unknown type':
        scene = tmp_path / 'bad.obj'
        scene.write_text('v 0 0 0\n')
        problem = 'unknown input type'
    elif case == 'missing':
        problem = 'file not found'
    else:
        scene = tmp_path / 'bad.bin'
        scene.write_bytes(np.zeros(9 * 5 - 2, np.float32).tobytes())
        problem = 'not a whole number of points'
    with pytest.raises(SystemExit) as exit_info:
        infer(model, scene, tmp_path / 'out')
    assert str(exit_info.value) == f'error: {scene}: ' + str(exit_info.value).split(
        f'{scene}: ', 1)[1] and problem in str(exit_info.value)
    assert not (tmp_path / 'out').exists()


def test_subsample_keeps_one_point_per_cell_of_the_finest_grid_within_the_limit():
    xyz = np.random.default_rng(0).uniform(0, 2, (200_000, 3)).astype(np.float32)
    keep, owner, cell = subsample(xyz, 20_000)
    assert 10_000 < len(keep) <= 20_000 and owner.shape == (200_000,)
    np.testing.assert_array_equal(owner[keep], np.arange(len(keep)))  # each keeps itself
    assert np.abs(xyz - xyz[keep][owner]).max() <= cell  # a point and its representative
    assert len(voxel_cells(xyz, cell / 2 ** 0.25)[0]) > 20_000  # the next finer grid: too many
    keep, owner, cell = subsample(xyz, 10 ** 6)
    assert cell == 0 and (keep == np.arange(200_000)).all() and (owner == keep).all()
    superpoints = voxel_superpoints(xyz, 0.5)  # 0.5 m cells from the scene's minimum
    cells = np.floor((xyz - xyz.min(0)) / 0.5) @ [16, 4, 1]
    assert superpoints.max() + 1 == len(np.unique(cells)) == 4 ** 3
    first = np.unique(superpoints, return_index=True)[1]
    np.testing.assert_array_equal(cells[first][superpoints], cells)  # one superpoint per cell


def test_five_million_point_scene(model, tmp_path):
    """5 M points, handled: subsampled to at most --max-points for the model (here 200,000,
    for speed), every point gets its representative's instance; this whole test process
    stays below 4 GB (README: the command's measured peak with the default 1 M)."""
    rng = np.random.default_rng(1)
    xyz = rng.uniform((0, 0, 0), (6, 5, 3), (5_000_000, 3)).astype(np.float32)
    scene = point_cloud(tmp_path / 'huge.ply', xyz, rng.integers(0, 255, (5_000_000, 3)))
    del xyz
    summary, vertex, _ = infer(model, scene, tmp_path / 'out', '--superpoint-size', 0.5,
                               '--max-points', 200_000)
    assert summary['num_points'] == 5_000_000 and summary['num_points_model'] <= 200_000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 * 2 ** 20  # KiB
    assert len(summary['instances']) > 0
    check_consistent(summary, vertex)


@pytest.mark.parametrize('dtype, values, expected', [
    ('u1', [0, 128, 255], [0, 128, 255]),
    ('u2', [0, 257 * 128, 65535], [0, 128, 255]),
    ('f4', [0.0, 0.5, 1.0], [0, 127.5, 255])])
def test_colours_of_any_ply_type_become_0_to_255(tmp_path, dtype, values, expected):
    vertex = np.zeros(3, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', dtype),
                          ('green', dtype), ('blue', dtype)])
    vertex['x'] = [0, 1, 2]
    for channel in ('red', 'green', 'blue'):
        vertex[channel] = values
    write_ply(tmp_path / 'c.ply', vertex, np.zeros((0, 3), np.int64))
    scene = load_scene(tmp_path / 'c.ply')
    assert scene.has_colors and not scene.has_normals
    np.testing.assert_allclose(scene.points[:, 3:6], np.repeat(np.array(expected)[:, None], 3, 1))


def test_truncated_checkpoint_is_refused(model, tmp_path):
    config, checkpoint, _ = model
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(checkpoint, 'rb').read()[:4096])
    with pytest.raises(SystemExit, match=f'error: cannot read checkpoint {truncated}: it is '
                       'truncated'):
        run_tool('infer', config, truncated, MESH_GZ, '--out-dir', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
