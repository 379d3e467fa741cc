"""IKNEKernelHead: configs (kernel vs transformer differ only in the head), loss and predict of
both heads from their configs, sampling, dynamic convolution, matrix NMS, inference filters."""
import os

import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.config import Config
from mmengine.structures import InstanceData

import ikne_plugin.models  # noqa: F401  (registers the heads)
from ikne_plugin.ops import furthest_point_sample
from ikne_plugin.models.task_modules import matrix_nms
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = [('ikne_trans_scannet.py', 'ikne_kernel_scannet.py'),
         ('ikne_trans_synthetic.py', 'ikne_kernel_synthetic.py')]


def load(name):
    return Config.fromfile(os.path.join(ROOT, 'configs', name))


def flatten(tree, prefix=''):
    """{dotted key: leaf} of nested dicts."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f'{prefix}{k}.'))
        return out
    return {prefix[:-1]: tree}


@pytest.mark.parametrize('trans_name,kernel_name', PAIRS)
def test_kernel_config_differs_only_in_the_head(trans_name, kernel_name):
    trans, kernel = flatten(load(trans_name).to_dict()), flatten(load(kernel_name).to_dict())
    differing = {k for k in trans.keys() | kernel.keys() if trans.get(k, object()) != kernel.get(k, object())}
    assert 'model.head.type' in differing
    if 'synthetic' in kernel_name:
        # the CPU demo's head trains on its own schedule; the data settings stay inherited
        differing -= {'optim_wrapper.optimizer.lr', 'max_epochs', 'param_scheduler.end',
                      'train_cfg.max_epochs', 'default_hooks.checkpoint.interval'}
    assert all(k.startswith('model.head.') for k in differing), sorted(differing)
    # the instance criterion (matching, set losses, IKA/ISG) is the transformer's, unchanged
    assert not any(k.startswith('model.head.criterion.') for k in differing)


def scene(num_points, num_instances, seed):
    """Points (x, y, z, rgb) of ``num_instances`` boxes on a floor, packed like the pipeline:
    superpoints of 0.25 m cells, semantic classes (floor 1, objects 2..), dense instances."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(num_points, 3, generator=g) * torch.tensor([4.0, 4.0, 0.05])  # floor
    inst = torch.full((num_points,), -1)
    per = num_points // (num_instances + 1)
    for k in range(num_instances):
        rows = slice((k + 1) * per, (k + 2) * per)
        xyz[rows] = torch.rand(per, 3, generator=g) * 0.5 + torch.tensor([0.3 + 0.8 * k, 1.0 + 0.3 * k, 0.1])
        inst[rows] = k
    labels = torch.arange(num_instances) % 18
    semantic = torch.where(inst >= 0, labels[inst.clamp_min(0)] + 2, 1)
    sp = torch.unique(torch.floor(xyz / 0.25).long(), dim=0, return_inverse=True)[1]
    num_sp = int(sp.max()) + 1
    frac = torch.zeros(num_instances, num_sp).index_add_(
        1, sp[inst >= 0], torch.nn.functional.one_hot(inst[inst >= 0], num_instances).T.float())
    frac /= torch.bincount(sp, minlength=num_sp)
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(sp_pts_mask=sp, pts_semantic_mask=semantic, pts_instance_mask=inst)
    sample.gt_instances_3d = InstanceData(
        labels_3d=labels, sp_masks=frac > 0.5,
        centers=torch.stack([xyz[inst == k].mean(0) for k in range(num_instances)]))
    return torch.cat([xyz, torch.rand(num_points, 3, generator=g) * 2 - 1], 1), sample


@pytest.mark.parametrize('config', ['ikne_trans_synthetic.py', 'ikne_kernel_synthetic.py'])
def test_both_heads_train_and_predict_from_their_configs(config):
    """The detector of each synthetic config: finite losses that reach the backbone, then
    per-point predictions of the benchmark's format."""
    torch.manual_seed(0)
    model = MODELS.build(load(config).model)
    batch = [scene(1500, 3, seed=1), scene(1200, 2, seed=2)]
    inputs, samples = dict(points=[p for p, _ in batch]), [s for _, s in batch]
    losses = model.loss(inputs, samples)
    if 'kernel' in config:
        assert {'loss_sem', 'loss_offset', 'loss_offset_dir', 'loss_point_box', 'loss_cls', 'loss_mask_bce',
                'loss_mask_dice', 'loss_center', 'loss_box', 'loss_score', 'loss_ika', 'loss_isg'} == set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.input_conv[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        samples = model.predict(inputs, samples)
    for (points, _), sample in zip(batch, samples):
        pred = sample.pred_pts_seg
        k = len(pred.instance_labels)
        assert pred.pts_instance_mask.shape == (k, len(points)) and pred.pts_instance_mask.dtype == torch.bool
        assert pred.instance_scores.shape == (k,)
        assert ((pred.instance_labels >= 0) & (pred.instance_labels < 18)).all()


def test_scannet_kernel_head_builds_with_the_papers_sizes():
    head = MODELS.build(load('ikne_kernel_scannet.py').model.head).eval()
    assert (head.num_candidates, head.num_instances) == (2048, 256)
    assert (head.aggregator1.radius, head.aggregator2.radius) == (0.2, 0.4)
    assert (head.score_thr, head.min_points, head.topk) == (0.2, 100, 100)
    assert len(head.kernel_shapes) == 3 and head.kernel_shapes[0][0] == 32 + 9
    g = torch.Generator().manual_seed(0)
    x = dict(pts_feats=[torch.randn(2500, 32, generator=g)], pts_xyz=[torch.rand(2500, 3, generator=g) * 4],
             sp_feats=[torch.randn(90, 32, generator=g)], sp_xyz=[torch.rand(90, 3, generator=g) * 4])
    with torch.no_grad():
        out = head(x)
    assert out['layers'][0]['cls_logits'].shape == (1, 256, 19)
    assert out['layers'][0]['mask_logits'].shape == (1, 256, 90) and out['queries'].shape == (1, 256, 128)
    assert out['sp_counts'] == [90]


def small_head(**overrides):
    torch.manual_seed(0)
    cfg = dict(type='IKNEKernelHead', in_channels=8, channels=16, mask_channels=8, num_candidates=40,
               num_instances=10, min_points=1, score_thr=0.0, criterion=dict(type='IKNECriterion'))
    return MODELS.build({**cfg, **overrides})


def test_candidates_come_from_the_foreground_shifted_by_the_offsets():
    head = small_head()
    g = torch.Generator().manual_seed(3)
    xyz = torch.rand(200, 3, generator=g)
    fg = torch.arange(200) >= 120  # 80 foreground points, more than num_candidates
    seen = {}
    original = head.aggregator1.group

    def spy(centers, points):
        seen['centers'], seen['points'] = centers, points
        return original(centers, points)

    head.aggregator1.group = spy
    with torch.no_grad():
        x = dict(pts_feats=[torch.randn(200, 8, generator=g)], pts_xyz=[xyz],
                 sp_feats=[torch.randn(7, 8, generator=g)], sp_xyz=[torch.rand(7, 3, generator=g)])
        head(x, foreground=[fg])
        offsets = head.offset_head(x['pts_feats'][0])
    shifted_fg = (xyz + offsets)[fg]
    torch.testing.assert_close(seen['points'], shifted_fg)
    # every candidate is a shifted foreground point
    dist = torch.cdist(seen['centers'], shifted_fg, compute_mode='donot_use_mm_for_euclid_dist')
    assert dist.min(1).values.max() < 1e-6
    # too few foreground points: all points are the pool
    with torch.no_grad():
        head(x, foreground=[torch.arange(200) >= 190])
    assert len(seen['points']) == 200


def test_batched_candidate_sampling_equals_each_scene_alone():
    """One FPS call for scenes of different sizes (padded with copies of each scene's first
    point) samples exactly each scene's own FPS, duplicates and too few distinct points included;
    and a batch's outputs equal each scene's alone (eval mode), masks followed by PAD_LOGIT."""
    head = small_head().eval()
    g = torch.Generator().manual_seed(4)
    few = torch.rand(5, 3, generator=g).repeat(12, 1)  # 60 points, 5 distinct: fewer than 40 samples
    shifted = [torch.rand(300, 3, generator=g), torch.rand(90, 3, generator=g), few]
    shifted[1][10:20] = shifted[1][0]  # copies of the first point among the real ones
    for batched, points in zip(head._candidates(shifted), shifted):
        assert torch.equal(batched, furthest_point_sample(points[None], 40)[0])
    sizes, sp_sizes = (200, 150), (7, 5)
    x = dict(pts_feats=[torch.randn(n, 8, generator=g) for n in sizes], pts_xyz=[torch.rand(n, 3, generator=g) for n in sizes],
             sp_feats=[torch.randn(s, 8, generator=g) for s in sp_sizes],
             sp_xyz=[torch.rand(s, 3, generator=g) for s in sp_sizes])
    with torch.no_grad():
        both = head(x)
        assert both['sp_counts'] == list(sp_sizes) and both['layers'][0]['mask_logits'].shape == (2, 10, 7)
        for b, n in enumerate(sp_sizes):
            alone = head({k: [v[b]] for k, v in x.items()})
            for key in ('cls_logits', 'scores', 'centers', 'boxes'):
                torch.testing.assert_close(both['layers'][0][key][b], alone['layers'][0][key][0])
            torch.testing.assert_close(both['layers'][0]['mask_logits'][b, :, :n], alone['layers'][0]['mask_logits'][0])
            assert (both['layers'][0]['mask_logits'][b, :, n:] == PAD_LOGIT).all()


def test_dynamic_convolution_equals_a_loop_over_instances():
    head = small_head().double()
    g = torch.Generator().manual_seed(4)
    q, s, c = 5, 11, 8
    kernels = torch.randn(q, sum(i * o + o for i, o in head.kernel_shapes), generator=g, dtype=torch.float64)
    mask_feats = torch.randn(s, c, generator=g, dtype=torch.float64)
    sp_xyz = torch.rand(s, 3, generator=g, dtype=torch.float64)
    centers = torch.rand(q, 3, generator=g, dtype=torch.float64)
    boxes = torch.cat([centers - 0.2, centers + 0.3], 1)
    out = head._dynamic_conv(kernels, mask_feats, sp_xyz, centers, boxes)
    for k in range(q):
        h = torch.cat([mask_feats, sp_xyz - centers[k], sp_xyz - boxes[k, :3], boxes[k, 3:] - sp_xyz], 1)
        start = 0
        for i, (c_in, c_out) in enumerate(head.kernel_shapes):
            w = kernels[k, start:start + c_in * c_out].view(c_in, c_out)
            b = kernels[k, start + c_in * c_out:start + c_in * c_out + c_out]
            start += c_in * c_out + c_out
            h = h @ w + b
            h = h.relu() if i < 2 else h
        torch.testing.assert_close(out[k], h[:, 0])


def test_matrix_nms():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    iou = torch.tensor([[1.0, 0.5, 0.9, 0.0],
                        [0.5, 1.0, 0.0, 0.6],
                        [0.9, 0.0, 1.0, 0.0],
                        [0.0, 0.6, 0.0, 1.0]])
    decayed = matrix_nms(scores, labels, iou)
    # 1: decayed by 0 (IoU 0.5); 2: another class, kept; 3: by 1 with 1's own overlap compensated
    expected = torch.tensor([0.9, 0.8 * 0.5, 0.7, 0.6 * min(1.0, (1 - 0.6) / (1 - 0.5))])
    torch.testing.assert_close(decayed, expected)
    gaussian = matrix_nms(scores, labels, iou, kernel='gaussian', sigma=2.0)
    assert gaussian[0] == 0.9 and gaussian[2] == 0.7 and (gaussian <= scores).all()
    with pytest.raises(ValueError, match='kernel must be'):
        matrix_nms(scores, labels, iou, kernel='hard')


def test_predict_keeps_scored_large_masks_once():
    """Two instances with the same mask and class: NMS suppresses the weaker; the score and
    size thresholds apply to the decayed score and the point count."""
    head = small_head(score_thr=0.2, min_points=3, topk=5)
    cls = torch.full((3, 19), -10.0)
    cls[0, 4] = cls[1, 4] = cls[2, 7] = 10.0
    scores = torch.tensor([[0.9], [0.8], [0.9]])
    masks = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    sp_ids = torch.tensor([0, 0, 1, 1, 2, 2, 2])  # superpoint sizes 2, 2, 3
    result = head._predict_scene(cls, scores, masks, sp_ids)
    assert result.instance_labels.tolist() == [4]  # the duplicate decays to 0; instance 2 has 3 points
    assert result.pts_instance_mask.tolist() == [[True] * 4 + [False] * 3]
    head.min_points = 2
    result = head._predict_scene(cls, scores, masks, sp_ids)
    assert sorted(result.instance_labels.tolist()) == [4, 7]


def test_isg_uses_the_low_rank_candidates_through_aggregator_2():
    head = small_head(criterion=dict(type='IKNECriterion', isg_loss=dict(type='ISGLoss', rank=2)))
    g = torch.Generator().manual_seed(5)
    x = dict(pts_feats=[torch.randn(100, 8, generator=g)], pts_xyz=[torch.rand(100, 3, generator=g)],
             sp_feats=[torch.randn(6, 8, generator=g)], sp_xyz=[torch.rand(6, 3, generator=g)])
    out = head(x)
    assert out['low_rank_queries'].shape == out['queries'].shape
    assert not torch.allclose(out['low_rank_queries'], out['queries'])
    head.eval()
    assert 'low_rank_queries' not in head(x)  # inference skips it


def test_too_few_points_is_a_clear_error():
    head = small_head()
    x = dict(pts_feats=[torch.randn(30, 8)], pts_xyz=[torch.rand(30, 3)], sp_feats=[torch.randn(4, 8)],
             sp_xyz=[torch.rand(4, 3)])
    with pytest.raises(ValueError, match='fewer than num_candidates=40'):
        head(x)
    with pytest.raises(ValueError, match='must not exceed num_candidates'):
        small_head(num_instances=50)


def test_predict_without_any_pair_above_the_threshold():
    head = small_head(score_thr=0.5)
    result = head._predict_scene(torch.zeros(3, 19), torch.full((3, 1), 0.9), torch.ones(3, 2),
                                 torch.tensor([0, 1, 1]))
    assert len(result.instance_labels) == 0 and result.pts_instance_mask.shape == (0, 3)
