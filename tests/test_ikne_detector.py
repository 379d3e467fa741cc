"""IKNE detector: MAFT's voxelisation, superpoint pooling, head calls, data flow, bad inputs."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

import ikne_plugin.models  # noqa: F401  (registers IKNE, SpConvUNet)

SMALL_BACKBONE = dict(type='SpConvUNet', in_channels=6, channels=(8, 16, 24), num_blocks=1)


@MODELS.register_module(force=True)
class TinyTestHead(nn.Module):
    """Test-only head with the contract's API: one mask logit per (superpoint, query)."""

    def __init__(self, in_channels, num_queries=3):
        super().__init__()
        self.mask = nn.Linear(in_channels + 3, num_queries)

    def forward(self, x):
        return [self.mask(torch.cat([f, c], 1)) for f, c in zip(x['sp_feats'], x['sp_xyz'])]

    def loss(self, x, batch_data_samples):
        return dict(loss_mask=torch.stack([m.sigmoid().mean() for m in self(x)]).mean())

    def predict(self, x, batch_data_samples):
        results = []
        for logits, sp_ids in zip(self(x), x['sp_ids']):
            results.append(InstanceData(pts_instance_mask=(logits > 0).T[:, sp_ids],
                                        instance_labels=torch.arange(logits.shape[1]),
                                        instance_scores=logits.sigmoid().mean(0)))
        return results


def build_model(**overrides):
    cfg = dict(type='IKNE', data_preprocessor=dict(type='Det3DDataPreprocessor'),
               voxel_size=0.02, backbone=SMALL_BACKBONE, pool='mean',
               head=dict(type='TinyTestHead', in_channels=8), with_normals=False)
    cfg.update(overrides)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def random_scene(num_points, offset=(0.0, 0.0, 0.0), extent=1.0, normals=False, seed=0):
    """Points [N, 6 or 9] (x, y, z, rgb in [-1, 1][, normals]) and dense superpoint ids
    (20 cm cells, renumbered 0..S-1) as a Det3DDataSample."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(num_points, 3, generator=g) * extent + torch.tensor(offset)
    rgb = torch.rand(num_points, 3, generator=g) * 2 - 1
    cols = [xyz, rgb] + ([nn.functional.normalize(torch.randn(num_points, 3, generator=g))]
                         if normals else [])
    cells = torch.floor((xyz - xyz.min(0).values) / 0.2).long()
    sp_ids = torch.unique(cells, dim=0, return_inverse=True)[1]
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(sp_pts_mask=sp_ids)
    return torch.cat(cols, 1), sample


def with_instances(scene, num_instances):
    """Add GT instances (slabs along x) the way the pipeline packs them (labels_3d, sp_masks
    from the mean point mask per superpoint > 0.5, centers)."""
    points, sample = scene
    sp_ids = sample.gt_pts_seg.sp_pts_mask
    slab = torch.clamp((points[:, 0] * num_instances).long(), max=num_instances - 1)
    point_masks = (slab[None] == torch.arange(num_instances)[:, None]).float()
    num_sp = int(sp_ids.max()) + 1
    sp_fraction = torch.zeros(num_instances, num_sp).index_add_(1, sp_ids, point_masks)
    sp_fraction /= torch.bincount(sp_ids, minlength=num_sp)
    centers = [points[m.bool(), :3].mean(0) for m in point_masks]
    sample.gt_instances_3d = InstanceData(
        labels_3d=torch.arange(num_instances) % 18, sp_masks=sp_fraction > 0.5,
        centers=torch.stack(centers) if centers else torch.zeros(0, 3))
    return points, sample


def test_end_to_end_with_the_transformer_head():
    """Losses (backpropagating into the backbone) and per-point predictions with the real head,
    a scene without instances included."""
    head = dict(type='IKNETransformerHead', in_channels=8, num_classes=18, num_queries=8,
                num_layers=2, d_model=32, num_heads=4, ffn_dim=64, min_points=1,
                criterion=dict(type='IKNECriterion'))
    model = build_model(head=head)
    batch = [with_instances(random_scene(1500, seed=12), 3),
             with_instances(random_scene(800, (0.5, 0, 0), seed=13), 0)]
    inputs, samples = dict(points=[p for p, _ in batch]), [s for _, s in batch]
    losses = model.loss(inputs, samples)
    assert losses and all(torch.isfinite(v).all() for v in losses.values())
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.backbone.input_conv[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        samples = model.predict(inputs, samples)
    for (points, _), sample in zip(batch, samples):
        pred = sample.pred_pts_seg
        num_pred = len(pred.instance_labels)
        assert pred.pts_instance_mask.shape == (num_pred, len(points))
        assert pred.pts_instance_mask.dtype == torch.bool
        assert pred.instance_scores.shape == (num_pred,)
        assert ((pred.instance_labels >= 0) & (pred.instance_labels < 18)).all()


def test_voxelisation_is_mafts():
    """Integer voxel = trunc(xyz / 0.02 - per-scene min), batch index first; spatial shape =
    max + 1 over the batch, at least 128 per axis; voxel coords distinct."""
    model = build_model()
    scenes = [random_scene(3000, (-1.5, 2.0, 0.3), extent=3.2, seed=1)[0],
              random_scene(2000, (5.0, -7.0, 0.0), extent=1.0, seed=2)[0]]
    xyz = torch.cat([s[:, :3] for s in scenes])
    batch_idx = torch.cat([torch.full((len(s),), i) for i, s in enumerate(scenes)])
    voxel_coords, p2v, spatial_shape = model.voxelize_points(xyz, batch_idx, [len(s) for s in scenes])

    expected = []  # reference in numpy, per scene, MAFT's order of operations (scale, then min)
    for i, s in enumerate(scenes):
        scaled = s[:, :3].numpy() * np.float32(50.0)
        grid = (scaled - scaled.min(0)).astype(np.int64)
        expected.append(np.concatenate([np.full((len(s), 1), i), grid], 1))
    expected = np.concatenate(expected)
    assert np.array_equal(voxel_coords[p2v].numpy(), expected)
    assert len(torch.unique(voxel_coords, dim=0)) == len(voxel_coords)
    assert spatial_shape == [max(int(m) + 1, 128) for m in expected[:, 1:].max(0)]
    assert spatial_shape[0] > 128  # the 3.2 m scene is larger than the minimum shape


@pytest.mark.parametrize('pool', ['mean', 'max'])
def test_superpoint_pooling_matches_reference(pool):
    """sp_feats / sp_xyz of each scene in a batch equal a per-superpoint loop over the points."""
    model = build_model(pool=pool).eval()
    batch = [random_scene(1500, seed=3), random_scene(1000, (2.0, 0, 0), seed=4)]
    with torch.no_grad():
        x = model.extract_feat(dict(points=[p for p, _ in batch]), [s for _, s in batch])
    for i, (points, sample) in enumerate(batch):
        sp_ids = sample.gt_pts_seg.sp_pts_mask
        feats = x['pts_feats'][i].double()
        assert x['pts_feats'][i].shape == (len(points), 8)
        assert torch.equal(x['pts_xyz'][i], points[:, :3]) and torch.equal(x['sp_ids'][i], sp_ids)
        num_sp = int(sp_ids.max()) + 1
        assert x['sp_feats'][i].shape == (num_sp, 8) and x['sp_xyz'][i].shape == (num_sp, 3)
        for s in range(num_sp):
            members = sp_ids == s
            ref = feats[members].mean(0) if pool == 'mean' else feats[members].max(0).values
            torch.testing.assert_close(x['sp_feats'][i][s].double(), ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(x['sp_xyz'][i][s].double(),
                                       points[members, :3].double().mean(0), atol=1e-6, rtol=1e-6)


def test_scene_features_do_not_depend_on_the_batch():
    model = build_model().eval()
    batch = [random_scene(1500, seed=5), random_scene(1200, (0.3, 0.1, 0), seed=6)]
    with torch.no_grad():
        both = model.extract_feat(dict(points=[p for p, _ in batch]), [s for _, s in batch])
        second = model.extract_feat(dict(points=[batch[1][0]]), [batch[1][1]])
    torch.testing.assert_close(both['sp_feats'][1], second['sp_feats'][0], atol=1e-5, rtol=1e-5)


def test_train_and_test_steps_through_the_data_preprocessor():
    """mmengine's data flow: loss dict, gradients in the backbone, pred_pts_seg per point."""
    model = build_model()
    batch = [random_scene(1500, seed=7), random_scene(900, (1.0, 1.0, 0), seed=8)]
    data = pseudo_collate([dict(inputs=dict(points=p), data_samples=s) for p, s in batch])
    data = model.data_preprocessor(data, True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_mask'} and torch.isfinite(losses['loss_mask'])
    losses['loss_mask'].backward()
    assert model.backbone.input_conv[0].weight.grad.abs().sum() > 0

    model.eval()
    data = pseudo_collate([dict(inputs=dict(points=p), data_samples=s) for p, s in batch])
    with torch.no_grad():
        samples = model.test_step(data)
    for (points, _), sample in zip(batch, samples):
        pred = sample.pred_pts_seg
        assert pred.pts_instance_mask.dtype == torch.bool
        assert pred.pts_instance_mask.shape == (3, len(points))
        assert pred.instance_labels.dtype == torch.int64 and pred.instance_scores.shape == (3,)
    with torch.no_grad():
        raw = model(**model.data_preprocessor(data, False), mode='tensor')
    assert [r.shape[1] for r in raw] == [3, 3]


def test_normals_are_appended_when_configured():
    model = build_model(with_normals=True, backbone=dict(SMALL_BACKBONE, in_channels=9)).eval()
    points, sample = random_scene(800, normals=True, seed=9)
    with torch.no_grad():
        with_n = model.extract_feat(dict(points=[points]), [sample])['sp_feats'][0]
        flipped = points.clone()
        flipped[:, 6:9] *= -1
        without_n = model.extract_feat(dict(points=[flipped]), [sample])['sp_feats'][0]
    assert not torch.allclose(with_n, without_n)  # the normals reach the backbone
    with pytest.raises(ValueError, match='expects points of scene 0'):
        model.extract_feat(dict(points=[points[:, :6]]), [sample])
    with pytest.raises(ValueError, match='backbone expects 6'):
        build_model(with_normals=True)


@pytest.mark.parametrize('num_points', [1, 3, 7])
def test_scene_of_a_few_points(num_points):
    model = build_model()
    batch = [random_scene(num_points, extent=3.0, seed=10)]
    data = dict(points=[p for p, _ in batch])
    losses = model.loss(data, [s for _, s in batch])
    losses['loss_mask'].backward()
    model.eval()
    with torch.no_grad():
        samples = model.predict(data, [s for _, s in batch])
    assert samples[0].pred_pts_seg.pts_instance_mask.shape[1] == num_points


def test_bad_inputs_are_named():
    with pytest.raises(KeyError, match=r"NoSuchUNet is not in the mmdet3d::model registry"):
        build_model(backbone=dict(type='NoSuchUNet'))
    with pytest.raises(ValueError, match="pool must be 'mean' or 'max'"):
        build_model(pool='sum')
    model = build_model()
    points, sample = random_scene(100, seed=11)
    with pytest.raises(ValueError, match=r'sp_pts_mask of scene 0 as an int64 tensor \[100\]'):
        model.extract_feat(dict(points=[points]), [Det3DDataSample()])
    with pytest.raises(ValueError, match=r'sp_pts_mask of scene 0 as an int64 tensor \[99\]'):
        model.extract_feat(dict(points=[points[:99]]), [sample])
    with pytest.raises(ValueError, match='expects points of scene 0 as a non-empty'):
        model.extract_feat(dict(points=[points[:0]]), [sample])
    with pytest.raises(ValueError, match='one data sample'):
        model.extract_feat(dict(points=[points, points]), [sample])


def test_parse_losses_is_mmengines():
    """One stacked sum gives mmengine's total, log and gradients; other terms go to mmengine."""
    from mmengine.model import BaseModel
    model = build_model()
    g = torch.Generator().manual_seed(3)
    leaves = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    losses = dict(loss_a=leaves[0] * 2, acc=leaves[1], **{'d0.loss_b': leaves[2] ** 2, 'loss_c': leaves[3].exp()})
    ours, ours_log = model.parse_losses(losses)
    (grad_ours, ) = torch.autograd.grad(ours, leaves, retain_graph=True)
    ref, ref_log = BaseModel.parse_losses(model, losses)
    (grad_ref, ) = torch.autograd.grad(ref, leaves)
    torch.testing.assert_close(ours, ref, rtol=1e-15, atol=0)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=0, atol=0)
    assert list(ours_log) == list(ref_log)
    for key in ref_log:
        torch.testing.assert_close(ours_log[key], ref_log[key], rtol=1e-15, atol=0)
    vector = dict(loss_a=leaves[:2].sum(), loss_v=leaves[2:] * 3)  # not all one number: mmengine's
    ours, ours_log = model.parse_losses(vector)
    torch.testing.assert_close(ours, leaves[:2].sum() + (leaves[2:] * 3).mean())
    assert list(ours_log) == ['loss', 'loss_a', 'loss_v']
