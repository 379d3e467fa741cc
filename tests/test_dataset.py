"""The registered dataset: train/val/test splits through an mmengine dataloader."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS
from mmengine.runner import Runner

import ikne_plugin.datasets  # noqa: F401  (registers the dataset and transforms)
from ikne_plugin.datasets.label_map import CLASSES, SEG_VALID_CLASS_IDS, VALID_CLASS_IDS
from ikne_plugin.datasets.scannet_converter import convert_scannet
from ikne_plugin.datasets.scannet_raw import MESH_SUFFIX
from ikne_plugin.datasets.synthetic_scannet import make_synthetic_scannet

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
