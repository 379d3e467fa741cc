"""Registered transforms: augmentation invariants, crop alignment, packing against brute force."""
import os

import numpy as np
import pytest
import torch
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import DepthPoints
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

import ikne_plugin.datasets  # noqa: F401  (registers the transforms)
from ikne_plugin.datasets.label_map import SEG_VALID_CLASS_IDS, VALID_CLASS_IDS
from ikne_plugin.datasets.transforms.elastic_distortion import box_blur3, trilinear_interpolate

SAMPLE = os.path.join(os.path.dirname(__file__), 'data', 'mmdet3d_scannet_sample')


def _scene(n=3000, seed=0, dims=9):
    """A random scene: points with unit normals, masks and sparse superpoint ids."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, [6, 5, 2.5], (n, 3))
    rgb = rng.uniform(0, 255, (n, 3))
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    points = np.concatenate([xyz, rgb, normals], 1)[:, :dims].astype(np.float32)
    sp = rng.integers(0, 40, n) * 1000 + 7  # sparse ids like ScanNet's
    return dict(points=DepthPoints(points, points_dim=dims),
                sp_pts_mask=sp,
                pts_semantic_mask=rng.integers(0, 21, n),
                pts_instance_mask=rng.integers(0, 12, n),
                seg_valid_class_ids=SEG_VALID_CLASS_IDS, valid_class_ids=VALID_CLASS_IDS,
                scene_name='scene0000_00', sample_idx=0, lidar_path='x.bin')


def _array(results):
    return results['points'].tensor.numpy().astype(np.float64)


def test_center_scene_subtracts_the_mean_and_keeps_everything_else():
    scene = _scene(500)
    original = _array(scene)
    out = TRANSFORMS.build(dict(type='CenterScene'))(scene)
    centred = _array(out)
    np.testing.assert_allclose(out['scene_center'], original[:, :3].mean(0), rtol=1e-12)
    np.testing.assert_allclose(centred[:, :3], original[:, :3] - original[:, :3].mean(0),
                               atol=1e-5)
    np.testing.assert_allclose(centred[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_array_equal(centred[:, 3:], original[:, 3:])

    out = TRANSFORMS.build(dict(type='CenterScene', axes='xy'))(_scene(500))
    np.testing.assert_allclose(_array(out)[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_array_equal(_array(out)[:, 2], original[:, 2])
    assert out['scene_center'][2] == 0
    with pytest.raises(ValueError, match="axes must be distinct letters of 'xyz'"):
        TRANSFORMS.build(dict(type='CenterScene', axes='xw'))


def test_jitter_flip_rotate_is_linear_and_keeps_normals_perpendicular():
    np.random.seed(0)
    t = TRANSFORMS.build(dict(type='RandomJitterFlipRotate'))
    # points on a plane through the origin with normal n; after any linear map the
    # transformed normal must stay perpendicular to the transformed plane
    rng = np.random.default_rng(1)
    n = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    basis = np.linalg.svd(n[None])[2][1:]
    xyz = rng.normal(size=(500, 2)) @ basis
    points = np.concatenate([xyz, rng.uniform(0, 255, (500, 3)), np.tile(n, (500, 1))], 1)
    original = points.astype(np.float32)
    out = _array(t(dict(points=DepthPoints(original.copy(), points_dim=9))))
    matrix = np.linalg.lstsq(original[:, :3].astype(np.float64), out[:, :3], rcond=None)[0]
    np.testing.assert_allclose(original[:, :3] @ matrix, out[:, :3], atol=1e-4)  # linear
    np.testing.assert_array_equal(out[:, 3:6], original[:, 3:6])
    np.testing.assert_allclose(np.linalg.norm(out[:, 6:], axis=1), 1, atol=1e-5)
    assert np.abs(out[:, :3] @ out[0, 6:]).max() < 1e-4


def test_rotation_only_preserves_distances_and_flip_negates_x():
    np.random.seed(2)
    scene = _scene(200, dims=6)
    original = _array(scene)
    rotate = TRANSFORMS.build(dict(type='RandomJitterFlipRotate', jitter_std=0, flip_x_prob=0))
    out = _array(rotate(dict(points=scene['points'])))
    d0 = np.linalg.norm(original[:1, :3] - original[:, :3], axis=1)
    np.testing.assert_allclose(np.linalg.norm(out[:1, :3] - out[:, :3], axis=1), d0, atol=1e-4)
    np.testing.assert_allclose(out[:, 2], original[:, 2], atol=1e-5)  # about z only
    flip = TRANSFORMS.build(dict(type='RandomJitterFlipRotate', jitter_std=0, flip_x_prob=1,
                                 rotation_range=(0, 0)))
    out = _array(flip(dict(points=scene['points'])))
    np.testing.assert_allclose(out[:, :3], original[:, :3] * [-1, 1, 1], atol=1e-5)


def test_color_shift_is_one_offset_per_scene():
    np.random.seed(3)
    t = TRANSFORMS.build(dict(type='RandomColorShift', std=0.1))
    shifts = []
    for seed in range(200):
        scene = _scene(50, seed, dims=6)
        original = _array(scene)
        out = _array(t(scene))
        np.testing.assert_array_equal(out[:, :3], original[:, :3])
        shift = out[:, 3:6] - original[:, 3:6]
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-3)
        shifts.append(shift[0])
    assert np.std(shifts) == pytest.approx(0.1 * 127.5, rel=0.15)


def test_box_blur_matches_scipy():
    a = np.random.default_rng(4).normal(size=(5, 6, 7))
    for axis, kernel in enumerate([np.ones((3, 1, 1)), np.ones((1, 3, 1)), np.ones((1, 1, 3))]):
        np.testing.assert_allclose(box_blur3(a, axis),
                                   ndimage.convolve(a, kernel / 3, mode='constant', cval=0))


def test_trilinear_interpolation_matches_scipy():
    rng = np.random.default_rng(5)
    grid = rng.normal(size=(6, 5, 7, 3))
    origin, spacing = np.array([-1.0, 2.0, 0.5]), 0.4
    axes = [origin[a] + spacing * np.arange(grid.shape[a]) for a in range(3)]
    xyz = rng.uniform([a[0] for a in axes], [a[-1] for a in axes], (1000, 3))
    expected = RegularGridInterpolator(axes, grid)(xyz)
    np.testing.assert_allclose(trilinear_interpolate(grid, origin, spacing, xyz), expected,
                               atol=1e-12)


def test_elastic_keeps_points_and_moves_them_smoothly():
    np.random.seed(6)
    scene = _scene(5000)
    original = _array(scene)
    t = TRANSFORMS.build(dict(type='ElasticDistortion'))
    out = _array(t(scene))
    assert out.shape == original.shape
    np.testing.assert_array_equal(out[:, 3:], original[:, 3:])
    move = out[:, :3] - original[:, :3]
    assert 0.01 < np.abs(move).mean() < 0.5  # metres: a visible but bounded distortion
    # smooth: near points move alike, far points independently
    order = np.argsort(original[:, 0])
    near = np.linalg.norm(original[order[1:], :3] - original[order[:-1], :3], axis=1) < 0.05
    step = np.linalg.norm(move[order[1:]] - move[order[:-1]], axis=1)
    assert step[near].mean() < 0.2 * np.linalg.norm(move, axis=1).mean()


def test_crop_keeps_aligned_subset_in_a_window():
    np.random.seed(7)
    scene = _scene(20000)
    original = _array(scene)
    scene['point_index'] = np.arange(20000)
    semantic, instance = scene['pts_semantic_mask'].copy(), scene['pts_instance_mask'].copy()
    t = TRANSFORMS.build(dict(type='ShrinkingWindowCrop', max_npoint=5000, window=6.0, step=0.5,
                              per_point_keys=('pts_semantic_mask', 'pts_instance_mask',
                                              'sp_pts_mask', 'point_index')))
    out = t(scene)
    kept = out['point_index']
    assert 0 < len(kept) <= 5000 and len(np.unique(kept)) == len(kept)
    np.testing.assert_array_equal(_array(out), original[kept])
    np.testing.assert_array_equal(out['pts_semantic_mask'], semantic[kept])
    np.testing.assert_array_equal(out['pts_instance_mask'], instance[kept])
    extent = original[kept, :3].max(0) - original[kept, :3].min(0)
    assert (extent[:2] < 6.0).all()
    small = _scene(100)
    assert t(dict(small))['points'] is small['points']  # within the limit: untouched


def test_crop_rejects_impossible_limits():
    np.random.seed(8)
    scene = _scene(1000)
    scene['points'] = DepthPoints(np.zeros((1000, 6), np.float32), points_dim=6)  # one spot
    with pytest.raises(ValueError, match='window shrank'):
        TRANSFORMS.build(dict(type='ShrinkingWindowCrop', max_npoint=10))(scene)


def _brute_force_targets(results):
    """Per-instance targets with explicit loops (the oracle for the packing)."""
    sem, inst = results['pts_semantic_mask'], results['pts_instance_mask']
    xyz = _array(results)[:, :3]
    instances = {}
    for i in range(len(sem)):
        if sem[i] < 20 and SEG_VALID_CLASS_IDS[sem[i]] in VALID_CLASS_IDS and inst[i] > 0:
            instances.setdefault((SEG_VALID_CLASS_IDS[sem[i]], inst[i]), []).append(i)
    sp_ids = sorted(set(results['sp_pts_mask'].tolist()))
    targets = []
    for (nyu40, _), idx in sorted(instances.items()):
        members = set(idx)
        sp_mask = []
        for s in sp_ids:
            in_sp = [i for i in range(len(sem)) if results['sp_pts_mask'][i] == s]
            sp_mask.append(sum(i in members for i in in_sp) / len(in_sp) > 0.5)
        targets.append((VALID_CLASS_IDS.index(nyu40), sorted(idx), sp_mask,
                        xyz[idx].mean(0)))
    return targets


@pytest.mark.parametrize('with_normals', [False, True])
def test_pack_matches_brute_force(with_normals):
    scene = _scene(400, seed=9)
    scene['eval_ann_info'] = dict()
    original = _array(scene)
    expected = _brute_force_targets(scene)
    out = TRANSFORMS.build(dict(type='PackInstanceSegInputs', with_normals=with_normals))(
        dict(scene))
    points = out['inputs']['points']
    assert points.dtype == torch.float32 and points.shape == (400, 9 if with_normals else 6)
    np.testing.assert_allclose(points[:, :3].numpy(), original[:, :3], atol=1e-6)
    np.testing.assert_allclose(points[:, 3:6].numpy(), original[:, 3:6] / 127.5 - 1, atol=1e-6)
    sample = out['data_samples']
    seg, gt = sample.gt_pts_seg, sample.gt_instances_3d
    sp = seg.sp_pts_mask.numpy()
    assert sorted(set(sp.tolist())) == list(range(40))  # dense re-indexing
    assert (np.unique(scene['sp_pts_mask'], return_inverse=True)[1] == sp).all()
    assert len(gt) == len(expected) > 0
    inst = seg.pts_instance_mask.numpy()
    for k, (label, idx, sp_mask, centre) in enumerate(expected):
        assert gt.labels_3d[k].item() == label
        assert np.flatnonzero(inst == k).tolist() == idx
        assert gt.sp_masks[k].tolist() == sp_mask
        np.testing.assert_allclose(gt.centers[k].numpy(), centre, atol=1e-5)
    assert (inst[np.isin(np.arange(400), sum((e[1] for e in expected), []), invert=True)]
            == -1).all()
    assert gt.sp_masks.dtype == torch.bool and gt.centers.dtype == torch.float32
    sem = scene['pts_semantic_mask']
    gt_ids = sample.eval_ann_info['gt_ids']
    for i in range(400):
        nyu40 = SEG_VALID_CLASS_IDS[sem[i]] if sem[i] < 20 else 0
        valid = nyu40 in VALID_CLASS_IDS and scene['pts_instance_mask'][i] > 0
        assert gt_ids[i] == (nyu40 * 1000 + scene['pts_instance_mask'][i] if valid else 0)
    assert sample.metainfo['scene_name'] == 'scene0000_00'


def test_pack_without_instances_and_without_labels():
    scene = _scene(100, dims=6)
    scene['pts_semantic_mask'][:] = 0  # all wall: no instance
    out = TRANSFORMS.build(dict(type='PackInstanceSegInputs'))(dict(scene))
    gt = out['data_samples'].gt_instances_3d
    assert gt.labels_3d.shape == (0,) and gt.centers.shape == (0, 3)
    assert gt.sp_masks.shape == (0, len(np.unique(scene['sp_pts_mask'])))
    assert (out['data_samples'].gt_pts_seg.pts_instance_mask == -1).all()
    unlabelled = {k: v for k, v in scene.items() if not k.startswith('pts_')}
    out = TRANSFORMS.build(dict(type='PackInstanceSegInputs'))(unlabelled)
    assert 'gt_instances_3d' not in out['data_samples']
    assert out['data_samples'].gt_pts_seg.sp_pts_mask.shape == (100,)


def test_pack_rejects_bad_inputs():
    pack = TRANSFORMS.build(dict(type='PackInstanceSegInputs', with_normals=True))
    with pytest.raises(ValueError, match='use_dim=9'):
        pack(_scene(10, dims=6))
    scene = _scene(10)
    del scene['sp_pts_mask']
    with pytest.raises(KeyError, match='LoadSuperPointsFromFile'):
        pack(scene)
    scene = _scene(10)
    scene['pts_semantic_mask'] = np.full(10, 33)  # an unmapped NYU40 id
    with pytest.raises(ValueError, match='PointSegClassMapping'):
        pack(scene)


def test_mmdet3d_loaders_on_the_mmdet3d_sample_and_full_chain(tmp_path):
    """mmdet3d's loading transforms on its own ScanNet sample, then our whole training chain;
    the packed instances must stay aligned with their points."""
    sp_path = str(tmp_path / 'sp.bin')
    np.repeat(np.arange(10, dtype=np.int64) * 5, 10).tofile(sp_path)
    mapping = np.full(41, 20, np.int64)
    mapping[list(SEG_VALID_CLASS_IDS)] = np.arange(20)
    results = dict(lidar_points=dict(lidar_path=os.path.join(SAMPLE, 'points', 'scene0000_00.bin')),
                   pts_semantic_mask_path=os.path.join(SAMPLE, 'semantic_mask', 'scene0000_00.bin'),
                   pts_instance_mask_path=os.path.join(SAMPLE, 'instance_mask', 'scene0000_00.bin'),
                   super_pts_path=sp_path, seg_label_mapping=mapping,
                   seg_valid_class_ids=SEG_VALID_CLASS_IDS, valid_class_ids=VALID_CLASS_IDS)
    pipeline = [dict(type='LoadPointsFromFile', coord_type='DEPTH', load_dim=6, use_dim=6),
                dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False,
                     with_mask_3d=True, with_seg_3d=True),
                dict(type='LoadSuperPointsFromFile'),
                dict(type='PointSegClassMapping'),
                dict(type='RandomJitterFlipRotate'),
                dict(type='RandomColorShift'),
                dict(type='ElasticDistortion'),
                dict(type='ShrinkingWindowCrop', max_npoint=60,
                     per_point_keys=('pts_semantic_mask', 'pts_instance_mask', 'sp_pts_mask',
                                     'point_index')),
                dict(type='PackInstanceSegInputs')]
    transforms = [TRANSFORMS.build(t) for t in pipeline]
    np.random.seed(10)
    for t in transforms[:4]:
        results = t(results)
    raw = np.fromfile(results['lidar_points']['lidar_path'], np.float32).reshape(-1, 6)
    semantic = mapping[np.fromfile(results['pts_semantic_mask_path'], np.int64)]
    instance = np.fromfile(results['pts_instance_mask_path'], np.int64)
    np.testing.assert_array_equal(results['pts_semantic_mask'], semantic)
    results['point_index'] = np.arange(100)
    colour_before = raw[:, 3:6]
    for t in transforms[4:-1]:
        results = t(results)
    kept = results['point_index']
    assert 0 < len(kept) <= 60
    packed = transforms[-1](results)
    rgb = packed['inputs']['points'][:, 3:6].numpy()
    shift = (rgb + 1) * 127.5 - colour_before[kept]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-3)
    seg = packed['data_samples'].gt_pts_seg
    np.testing.assert_array_equal(seg.pts_semantic_mask.numpy(), semantic[kept])
    inst = seg.pts_instance_mask.numpy()
    for k in range(inst.max() + 1):  # each dense instance is one raw instance of the kept points
        assert len(np.unique(instance[kept][inst == k])) == 1
    assert sorted(set(seg.sp_pts_mask.tolist())) == list(range(seg.sp_pts_mask.max() + 1))
