"""The registered dataset: train/val/test splits through an mmengine dataloader."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner

import ikne_plugin  # noqa: F401  (registers the dataset, transforms and model)
from _tools import CONFIG, one_thread, run_tool, tiny_options  # noqa: F401
from ikne_plugin.datasets.label_map import CLASSES, SEG_VALID_CLASS_IDS, VALID_CLASS_IDS
from ikne_plugin.datasets.scannet_converter import convert_scannet
from ikne_plugin.datasets.scannet_raw import MESH_SUFFIX
from ikne_plugin.datasets.synthetic_scannet import make_synthetic_scannet
from ikne_plugin.utils import UserInputError

LOAD = [dict(type='LoadPointsFromFile', coord_type='DEPTH', load_dim=9,
             use_dim=[0, 1, 2, 3, 4, 5]),
        dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False,
             with_mask_3d=True, with_seg_3d=True),
        dict(type='LoadSuperPointsFromFile'),
        dict(type='PointSegClassMapping')]
TRAIN_PIPELINE = LOAD + [dict(type='RandomJitterFlipRotate'), dict(type='RandomColorShift'),
                         dict(type='ElasticDistortion'),
                         dict(type='ShrinkingWindowCrop', max_npoint=250000),
                         dict(type='PackInstanceSegInputs')]
VAL_PIPELINE = LOAD + [dict(type='PackInstanceSegInputs')]
TEST_PIPELINE = [dict(type='LoadPointsFromFile', coord_type='DEPTH', load_dim=9, use_dim=9),
                 dict(type='LoadSuperPointsFromFile'),
                 dict(type='PackInstanceSegInputs', with_normals=True)]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    raw = str(tmp_path_factory.mktemp('raw'))
    make_synthetic_scannet(raw, 3, 1, seed=5, spacing=0.3)
    os.makedirs(os.path.join(raw, 'test'))
    shutil.copy(os.path.join(raw, 'val', 'scene0003_00' + MESH_SUFFIX),
                os.path.join(raw, 'test', 'scene0800_00' + MESH_SUFFIX))
    out = str(tmp_path_factory.mktemp('data'))
    assert convert_scannet(raw, out, progress=False)[1] == []
    return out


def _build(data_root, split, pipeline, test_mode):
    return DATASETS.build(dict(type='IKNEScanNetDataset', data_root=data_root,
                               ann_file=f'scannet_infos_{split}.pkl', pipeline=pipeline,
                               test_mode=test_mode))


def test_train_batches_through_a_dataloader(data_root):
    dataset = _build(data_root, 'train', TRAIN_PIPELINE, False)
    assert len(dataset) == 3
    meta = dataset.metainfo
    assert tuple(meta['classes']) == CLASSES and len(CLASSES) == 18
    assert tuple(meta['valid_class_ids']) == VALID_CLASS_IDS
    assert tuple(meta['seg_valid_class_ids']) == SEG_VALID_CLASS_IDS
    assert len(meta['seg_classes']) == 20
    loader = Runner.build_dataloader(dict(batch_size=2, num_workers=0, dataset=dataset,
                                          sampler=dict(type='DefaultSampler', shuffle=False)))
    batch = next(iter(loader))
    assert len(batch['inputs']['points']) == 2 and len(batch['data_samples']) == 2
    for points, sample in zip(batch['inputs']['points'], batch['data_samples']):
        n = len(points)
        assert points.shape[1] == 6 and points.dtype == torch.float32
        assert points[:, 3:].min() >= -1.6 and points[:, 3:].max() <= 1.6  # shifted colours
        seg, gt = sample.gt_pts_seg, sample.gt_instances_3d
        assert seg.pts_semantic_mask.shape == seg.pts_instance_mask.shape == (n,)
        num_sp = int(seg.sp_pts_mask.max()) + 1
        assert gt.sp_masks.shape == (len(gt), num_sp) and len(gt) > 0
        assert (gt.labels_3d >= 0).all() and (gt.labels_3d < 18).all()
        assert sample.metainfo['scene_name'].startswith('scene')


def test_val_carries_benchmark_ids_equal_to_val_gt(data_root):
    dataset = _build(data_root, 'val', VAL_PIPELINE, True)
    data = dataset[0]
    sample = data['data_samples']
    assert sample.metainfo['scene_name'] == 'scene0003_00'
    gt_ids = sample.eval_ann_info['gt_ids']
    expected = np.loadtxt(os.path.join(data_root, 'val_gt', 'scene0003_00.txt'), dtype=np.int64)
    np.testing.assert_array_equal(gt_ids, expected)
    raw = np.fromfile(os.path.join(data_root, 'points', 'scene0003_00.bin'),
                      np.float32).reshape(-1, 9)
    np.testing.assert_allclose(data['inputs']['points'][:, :3].numpy(), raw[:, :3])  # no aug


def test_test_split_has_no_labels(data_root):
    dataset = _build(data_root, 'test', TEST_PIPELINE, True)
    data = dataset[0]
    assert data['inputs']['points'].shape[1] == 9
    assert 'gt_instances_3d' not in data['data_samples']
    assert 'eval_ann_info' not in data['data_samples']


def test_missing_file_reported_when_built(data_root, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(data_root, root)
    os.remove(os.path.join(root, 'super_points', 'scene0001_00.bin'))
    with pytest.raises(FileNotFoundError, match='super_points/scene0001_00.bin'):
        _build(root, 'train', TRAIN_PIPELINE, False)
    with pytest.raises(FileNotFoundError, match='scannet_infos_nope.pkl'):
        _build(root, 'nope', TRAIN_PIPELINE, False)


def test_infos_are_mmengine_v2(data_root):
    with open(os.path.join(data_root, 'scannet_infos_train.pkl'), 'rb') as f:
        infos = pickle.load(f)
    assert set(infos) == {'metainfo', 'data_list'}


def _corrupted_copy(data_root, tmp_path, scene, case):
    """A copy of the data with the points of ``scene`` damaged; returns (root, points file)."""
    root = str(tmp_path / 'data')
    shutil.copytree(data_root, root)
    path = os.path.join(root, 'points', scene + '.bin')
    points = np.fromfile(path, np.float32).reshape(-1, 9)
    if case == 'empty':
        open(path, 'wb').close()
    elif case == 'no colours':  # x, y, z only: 3 of the 9 values per point
        points[:, :3].tofile(path)
    elif case == 'nan':
        points[7, 2] = np.nan
        points.tofile(path)
    elif case == 'inf':
        points[7, 0] = -np.inf
        points.tofile(path)
    else:  # 5 M points: a sparse file, never read
        with open(path, 'wb') as f:
            f.truncate(5_000_000 * 9 * 4)
    return root, path


@pytest.mark.parametrize('case, problem', [
    ('empty', 'empty file'),
    ('no colours', '.* bytes are .* points of 9 float32 values, but the info file lists .* points: '
                   'truncated, or written with other columns'),
    ('nan', '1 of .* points have NaN or infinite coordinates'),
    ('inf', '1 of .* points have NaN or infinite coordinates'),
    ('5 M points', '5,000,000 points, more than max_points=1,000,000')])
def test_bad_points_file_is_refused_naming_it(data_root, tmp_path, case, problem):
    root, path = _corrupted_copy(data_root, tmp_path, 'scene0001_00', case)
    dataset = _build(root, 'train', TRAIN_PIPELINE, False)
    with pytest.raises(UserInputError, match=f'{path}: {problem}'):
        dataset[1]
    dataset[0]  # the other scenes still load


def test_bad_scene_in_a_worker_is_one_message_from_the_tool(data_root, tmp_path):
    """tools/test.py with a DataLoader worker: the worker's traceback is reduced to the
    message naming the file."""
    root, path = _corrupted_copy(data_root, tmp_path, 'scene0003_00', 'nan')
    run_tool('train', CONFIG, '--work-dir', tmp_path, *tiny_options(data_root, 1))
    with pytest.raises(SystemExit) as exit_info:
        run_tool('test', CONFIG, tmp_path / 'epoch_1.pth', '--work-dir', tmp_path,
                 *tiny_options(root, 1, 'test_dataloader.num_workers=1'))
    assert str(exit_info.value) == (f'error: {path}: 1 of {len(np.fromfile(path, np.float32)) // 9}'
                                    ' points have NaN or infinite coordinates (the first is '
                                    'point 7)')


def test_three_point_scene_trains_and_predicts(data_root, tmp_path):
    """A scene of 3 points is handled: it loads through the training and val pipelines, the
    model's loss is finite and prediction runs."""
    root = str(tmp_path / 'data')
    shutil.copytree(data_root, root)
    for folder, dtype, width in (('points', np.float32, 9), ('super_points', np.int64, 1),
                                 ('semantic_mask', np.int64, 1), ('instance_mask', np.int64, 1)):
        path = os.path.join(root, folder, 'scene0003_00.bin')
        np.fromfile(path, dtype).reshape(-1, width)[:3].tofile(path)
    info_path = os.path.join(root, 'scannet_infos_val.pkl')
    with open(info_path, 'rb') as f:
        infos = pickle.load(f)
    infos['data_list'][0]['num_points'] = 3
    with open(info_path, 'wb') as f:
        pickle.dump(infos, f)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    for pipeline, test_mode in ((TRAIN_PIPELINE, False), (VAL_PIPELINE, True)):
        data = _build(root, 'val', pipeline, test_mode)[0]
        assert data['inputs']['points'].shape == (3, 6)
        batch = model.data_preprocessor(pseudo_collate([data]), training=not test_mode)
        if test_mode:
            with torch.no_grad():
                model.eval()
                pred = model.predict(batch['inputs'], batch['data_samples'])[0].pred_pts_seg
            assert pred.pts_instance_mask.shape[1] == 3
        else:
            losses = model.loss(batch['inputs'], batch['data_samples'])
            assert torch.isfinite(sum(losses.values()))
