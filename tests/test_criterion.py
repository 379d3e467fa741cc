"""IKNECriterion: every loss term against explicit formulas, empty scenes, switches, the head's loss."""
import math

import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.structures import InstanceData

import ikne_plugin.models  # noqa: F401  (registers the criterion, matcher and losses)
import ikne_plugin.models.heads  # noqa: F401
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT, pad_scenes


def gt(labels, masks, centers):
    return InstanceData(labels_3d=torch.as_tensor(labels, dtype=torch.long),
                        sp_masks=torch.as_tensor(masks, dtype=torch.bool),
                        centers=torch.as_tensor(centers, dtype=torch.float64))


def predictions(num_layers=1, sizes=(4, 5), num_queries=3, num_classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(sizes)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * 2

    def leaf(*shape):
        return rand(*shape).requires_grad_()

    # masks as the heads give them: [B, Q, max S] with PAD_LOGIT past each scene's superpoints
    layers = [dict(cls_logits=leaf(B, num_queries, num_classes + 1), scores=leaf(B, num_queries, 1),
                   centers=leaf(B, num_queries, 3),
                   mask_logits=pad_scenes([rand(num_queries, s) for s in sizes], PAD_LOGIT).requires_grad_())
              for _ in range(num_layers)]
    return dict(layers=layers, sp_counts=list(sizes), queries=leaf(B, num_queries, 8))


def fixed_matcher(matches):
    """Stand-in matcher returning the given (query_idx, gt_idx) per scene for every layer."""
    return lambda batch: [[(torch.tensor(q), torch.tensor(k)) for q, k in matches]
                          for _ in range(batch.cls_logits.shape[1])]


def test_layer_losses_match_explicit_formulas():
    preds = predictions()
    layer = preds['layers'][0]
    # Scene 0: query 2 <- GT 1, query 0 <- GT 0. Scene 1: query 1 <- GT 0.
    matches = [([2, 0], [1, 0]), ([1], [0])]
    gts = [gt([1, 0], [[1, 1, 0, 0], [0, 1, 1, 1]], [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]),
           gt([1], [[1, 0, 1, 0, 1]], [[-0.5, 0.0, 2.0]])]
    # Make one matched mask agree with its GT (IoU 1 > 0.5) so the score term is active.
    with torch.no_grad():
        layer['mask_logits'][1, 1] = torch.tensor([3.0, -3.0, 2.0, -1.0, 4.0])
    criterion = MODELS.build(dict(type='IKNECriterion', num_classes=2))
    criterion.matcher = fixed_matcher(matches)
    losses = criterion(preds, gts)

    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    weights = [1.0, 1.0, 0.1]
    ce_num = ce_den = 0.0
    for b in range(2):
        assigned = dict(zip(*matches[b]))
        for q in range(3):
            t = gts[b].labels_3d[assigned[q]].item() if q in assigned else 2
            logits = layer['cls_logits'][b, q].tolist()
            logp = logits[t] - math.log(sum(math.exp(v) for v in logits))
            ce_num += -weights[t] * logp
            ce_den += weights[t]
    bce = dice = score = 0.0
    l1 = []
    for b in range(2):
        per_bce, per_dice, per_score = [], [], []
        for q, k in zip(*matches[b]):
            x = layer['mask_logits'][b, q, :preds['sp_counts'][b]].tolist()
            t = gts[b].sp_masks[k].double().tolist()
            per_bce += [-(ti * math.log(sig(xi)) + (1 - ti) * math.log(1 - sig(xi))) for xi, ti in zip(x, t)]
            p = [sig(xi) for xi in x]
            per_dice.append(1 - (2 * sum(a * c for a, c in zip(p, t)) + 1) / (sum(p) + sum(t) + 1))
            binary = [1.0 if xi >= 0 else 0.0 for xi in x]
            inter = sum(a * c for a, c in zip(binary, t))
            iou = inter / (sum(binary) + sum(t) - inter)
            if iou > 0.5:
                per_score.append((layer['scores'][b, q, 0].item() - iou) ** 2)
            l1.append(sum(abs(a - c) for a, c in zip(layer['centers'][b, q].tolist(), gts[b].centers[k].tolist())))
        bce += sum(per_bce) / len(per_bce)
        dice += sum(per_dice) / len(per_dice)
        score += sum(per_score) / len(per_score) if per_score else 0.0
    assert score > 0  # the score term was exercised
    expected = dict(loss_cls=0.5 * ce_num / ce_den, loss_mask_bce=bce / 2, loss_mask_dice=dice / 2,
                    loss_center=0.5 * sum(l1) / len(l1), loss_score=0.5 * score / 2)
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert math.isclose(losses[key].item(), value, rel_tol=1e-9), key
    # the padded superpoint of scene 0 adds nothing
    sum(losses.values()).backward()
    assert (layer['mask_logits'].grad[0, :, 4:] == 0).all() and (layer['mask_logits'].grad[0, :, :4] != 0).any()


def test_assignment_threshold_out_of_range_is_refused():
    with pytest.raises(ValueError, match='assign_iou_thr'):
        MODELS.build(dict(type='IKNECriterion', assign_iou_thr=0.0))


def test_aux_layer_keys_and_last_layer_dice_switch():
    preds = predictions(num_layers=3)
    gts = [gt([0], [[1, 1, 0, 0]], [[0.0, 0, 0]]), gt([1, 0], [[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], [[1.0, 0, 0]] * 2)]
    fixed = MODELS.build(dict(type='IKNECriterion', num_classes=2))
    quirk = MODELS.build(dict(type='IKNECriterion', num_classes=2, average_last_dice=False))
    a, b = fixed(preds, gts), quirk(preds, gts)
    names = ['loss_cls', 'loss_mask_bce', 'loss_mask_dice', 'loss_center', 'loss_score']
    assert set(a) == {p + n for p in ('', 'd0.', 'd1.') for n in names}
    # MAFT's last layer Dice is summed over the scenes, not averaged: x batch size (2).
    torch.testing.assert_close(b['loss_mask_dice'], 2 * a['loss_mask_dice'])
    for key in set(a) - {'loss_mask_dice'}:
        torch.testing.assert_close(a[key], b[key])


def test_batch_without_gt_gives_finite_losses_and_gradients():
    preds = predictions(num_layers=2)
    empty = gt(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, 3))
    gts = [empty, gt(torch.zeros(0), torch.zeros(0, 5), torch.zeros(0, 3))]
    criterion = MODELS.build(dict(type='IKNECriterion', num_classes=2, ika_loss=dict(type='IKALoss'),
                                  isg_loss=dict(type='ISGLoss', rank=4)))
    losses = criterion(preds, gts)
    for key, value in losses.items():
        assert torch.isfinite(value) and value.requires_grad, key
        if 'cls' not in key and key not in ('loss_ika', 'loss_isg'):
            assert value.item() == 0, key
    # all queries no-object: plain CE towards the last class
    expected = torch.nn.functional.cross_entropy(preds['layers'][1]['cls_logits'].flatten(0, 1),
                                                 torch.full((6, ), 2))
    torch.testing.assert_close(losses['loss_cls'], 0.5 * expected)
    sum(losses.values()).backward()
    for layer in preds['layers']:
        for t in [layer['cls_logits'], layer['scores'], layer['centers'], layer['mask_logits']]:
            assert t.grad is not None and torch.isfinite(t.grad).all()


def test_head_loss_end_to_end():
    torch.manual_seed(0)
    head = MODELS.build(dict(type='IKNETransformerHead', in_channels=8, num_classes=3, num_queries=5, num_layers=2,
                             d_model=16, num_heads=2, ffn_dim=32, rpe_num_bins=8, rpe_bin_size=0.25,
                             criterion=dict(type='IKNECriterion', num_classes=3, ika_loss=dict(type='IKALoss'),
                                            isg_loss=dict(type='ISGLoss', rank=4))))
    g = torch.Generator().manual_seed(0)
    samples, feats, xyz = [], [], []
    for num_sp, num_gt in ((12, 2), (9, 0)):
        feats.append(torch.randn(num_sp, 8, generator=g))
        xyz.append(torch.rand(num_sp, 3, generator=g) * 2)
        sample = Det3DDataSample()
        sample.gt_instances_3d = InstanceData(labels_3d=torch.randint(0, 3, (num_gt, ), generator=g),
                                              sp_masks=torch.rand(num_gt, num_sp, generator=g) > 0.5,
                                              centers=torch.randn(num_gt, 3, generator=g))
        samples.append(sample)
    losses = head.loss(dict(sp_feats=feats, sp_xyz=xyz), samples)
    assert {'loss_cls', 'd0.loss_cls', 'loss_ika', 'loss_isg'} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_all_layers_at_once_equal_each_layer_alone():
    """The losses of all layers, computed in one batched pass, equal each layer's losses computed
    alone (the one-layer case is checked against explicit formulas above), with matches that
    differ by layer, a scene without GT instances, and boxes."""
    preds = predictions(num_layers=3, sizes=(4, 6, 5), num_queries=4)
    g = torch.Generator().manual_seed(3)
    for layer in preds['layers']:
        lo = torch.rand(3, 4, 3, generator=g, dtype=torch.float64)
        layer['boxes'] = torch.cat([lo, lo + torch.rand(3, 4, 3, generator=g, dtype=torch.float64)], -1)
    gts = [gt([1, 0], [[1, 1, 0, 0], [0, 1, 1, 1]], [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]),
           gt(torch.zeros(0), torch.zeros(0, 6), torch.zeros(0, 3)),
           gt([1, 1, 0], [[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 0]], [[-0.5, 0.0, 2.0]] * 3)]
    for target in gts:
        lo = torch.rand(len(target.labels_3d), 3, generator=g, dtype=torch.float64)
        target.boxes = torch.cat([lo, lo + 0.5], -1)
    per_layer = [[([3, 0], [1, 0]), ([], []), ([1, 2, 0], [0, 2, 1])],
                 [([1], [0]), ([], []), ([0, 3], [2, 0])],
                 [([0, 2], [0, 1]), ([], []), ([2], [1])]]
    as_tensors = [[(torch.tensor(q, dtype=torch.long), torch.tensor(k, dtype=torch.long)) for q, k in layer]
                  for layer in per_layer]
    criterion = MODELS.build(dict(type='IKNECriterion', num_classes=2))
    criterion.matcher = lambda batch: as_tensors
    together = criterion(preds, gts)
    for i, layer in enumerate(preds['layers']):
        criterion.matcher = lambda batch, i=i: [as_tensors[i]]
        alone = criterion(dict(layers=[layer], sp_counts=preds['sp_counts'], queries=preds['queries']), gts)
        prefix = '' if i == 2 else f'd{i}.'
        for key, value in alone.items():
            torch.testing.assert_close(together[prefix + key], value, rtol=1e-12, atol=1e-12)
    # the box term of the last layer by hand: mean over its matches of L1 + 1 - IoU
    terms = []
    for b, (queries, gt_ids) in enumerate(per_layer[2]):
        for q, k in zip(queries, gt_ids):
            p, t = preds['layers'][2]['boxes'][b, q].tolist(), gts[b].boxes[k].tolist()
            inter = math.prod(max(0.0, min(p[a + 3], t[a + 3]) - max(p[a], t[a])) for a in range(3))
            union = math.prod(p[a + 3] - p[a] for a in range(3)) + math.prod(t[a + 3] - t[a] for a in range(3)) - inter
            terms.append(sum(abs(x - y) for x, y in zip(p, t)) + 1 - inter / union)
    assert math.isclose(together['loss_box'].item(), sum(terms) / len(terms), rel_tol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_losses_and_gradients_equal_the_cpu():
    """On CUDA, IKA and ISG are queued before the matcher and ISG runs in the background
    (BackgroundCall): same losses and gradients as on the CPU, where they run in order."""
    preds = predictions(num_layers=2, sizes=(4, 5, 6), num_queries=4)
    gts = [gt([1, 0], [[1, 1, 0, 0], [0, 1, 1, 1]], [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]),
           gt(torch.zeros(0), torch.zeros(0, 5), torch.zeros(0, 3)),
           gt([1, 1, 0], [[1, 0, 1, 0, 1, 0], [0, 1, 0, 0, 0, 1], [1, 1, 1, 1, 0, 0]], [[-0.5, 0.0, 2.0]] * 3)]
    criterion = MODELS.build(dict(type='IKNECriterion', num_classes=2, ika_loss=dict(type='IKALoss'),
                                  isg_loss=dict(type='ISGLoss', rank=3)))
    leaves = [t for layer in preds['layers'] for t in
              (layer['cls_logits'], layer['scores'], layer['centers'], layer['mask_logits'])] + [preds['queries']]
    results = []
    for device in ('cpu', 'cuda'):
        on_device = [t.detach().to(device).requires_grad_() for t in leaves]
        moved, it = [], iter(on_device)
        for layer in preds['layers']:
            moved.append(dict(cls_logits=next(it), scores=next(it), centers=next(it), mask_logits=next(it)))
        losses = criterion(dict(layers=moved, sp_counts=preds['sp_counts'], queries=next(it)),
                           [g.to(device) for g in gts])
        grads = torch.autograd.grad(sum(losses.values()), on_device)
        results.append(({k: v.cpu() for k, v in losses.items()}, [g.cpu() for g in grads]))
    (cpu_losses, cpu_grads), (cuda_losses, cuda_grads) = results
    assert list(cpu_losses) == list(cuda_losses) and 'loss_isg' in cuda_losses
    for key in cpu_losses:
        torch.testing.assert_close(cuda_losses[key], cpu_losses[key], msg=key)
    for a, b in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(a, b)
