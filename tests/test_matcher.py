"""HungarianMatcher: MAFT's cost terms, optimal assignments, empty scenes, one host transfer."""
import math

import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.structures import InstanceData

import ikne_plugin.models  # noqa: F401  (registers the matcher)
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT, PaddedBatch, pad_scenes


def gt(labels, masks, centers):
    return InstanceData(labels_3d=torch.as_tensor(labels, dtype=torch.long),
                        sp_masks=torch.as_tensor(masks, dtype=torch.bool),
                        centers=torch.as_tensor(centers, dtype=torch.float64))


def layer(cls_logits, mask_logits, centers):
    """A head layer's outputs, from per-scene mask logits [Q, S_b] (padded as the heads pad them)."""
    return dict(cls_logits=cls_logits, mask_logits=pad_scenes(mask_logits, PAD_LOGIT), centers=centers,
                scores=torch.zeros(*cls_logits.shape[:2], 1, dtype=cls_logits.dtype))


def match(matcher, layers, sp_counts, gts):
    return matcher(PaddedBatch.build(layers, sp_counts, gts))


def test_cost_matrix_matches_explicit_formula():
    g = torch.Generator().manual_seed(0)
    Q, K, S, C = 4, 3, 6, 5
    cls = torch.randn(1, Q, C + 1, generator=g, dtype=torch.float64)
    masks = torch.randn(1, Q, S, generator=g, dtype=torch.float64) * 2
    centers = torch.randn(1, Q, 3, generator=g, dtype=torch.float64)
    target = gt([0, 3, 4], torch.rand(K, S, generator=g) > 0.5, torch.randn(K, 3, generator=g))
    matcher = MODELS.build(dict(type='HungarianMatcher', cls_cost=0.5, mask_bce_cost=1.0, mask_dice_cost=1.0,
                                center_cost=0.5))
    cost = matcher.cost_matrices(PaddedBatch.build([layer(cls, [masks[0]], centers)], [S], [target]))[0, 0]
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for q in range(Q):
        probs = [math.exp(v) for v in cls[0, q].tolist()]
        for k in range(K):
            p_cls = probs[target.labels_3d[k]] / sum(probs)
            t = target.sp_masks[k].double().tolist()
            x = masks[0, q].tolist()
            bce = -sum(ti * math.log(sig(xi)) + (1 - ti) * math.log(1 - sig(xi)) for xi, ti in zip(x, t)) / S
            p = [sig(xi) for xi in x]
            dice = 1 - (2 * sum(pi * ti for pi, ti in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
            l1 = sum(abs(a - b) for a, b in zip(centers[0, q].tolist(), target.centers[k].tolist()))
            expected = 0.5 * -p_cls + bce + dice + 0.5 * l1
            assert math.isclose(cost[q, k].item(), expected, rel_tol=1e-9), (q, k)


def test_batched_costs_equal_each_scene_alone():
    """Scenes of different superpoint and GT counts, padded into one batch: each scene's costs
    equal those of a batch of that scene alone (the padding adds nothing), also with masks
    padded past every scene (the GT masks are padded to the masks' width)."""
    g = torch.Generator().manual_seed(2)
    sizes, gt_counts, L, Q, C = (7, 3, 5), (2, 0, 4), 2, 4, 3
    layers = [layer(torch.randn(3, Q, C + 1, generator=g, dtype=torch.float64),
                    [torch.randn(Q, s, generator=g, dtype=torch.float64) * 3 for s in sizes],
                    torch.randn(3, Q, 3, generator=g, dtype=torch.float64)) for _ in range(L)]
    targets = [gt(torch.randint(0, C, (k, ), generator=g), torch.rand(k, s, generator=g) > 0.5,
                  torch.randn(k, 3, generator=g)) for s, k in zip(sizes, gt_counts)]
    matcher = MODELS.build(dict(type='HungarianMatcher'))
    together = matcher.cost_matrices(PaddedBatch.build(layers, sizes, targets))
    assert together.shape == (3, L, Q, max(gt_counts))
    for b, (s, k) in enumerate(zip(sizes, gt_counts)):
        alone_layers = [layer(x['cls_logits'][b:b + 1], [x['mask_logits'][b, :, :s]], x['centers'][b:b + 1])
                        for x in layers]
        alone = matcher.cost_matrices(PaddedBatch.build(alone_layers, [s], [targets[b]]))
        torch.testing.assert_close(together[b, :, :, :k], alone[0], rtol=1e-12, atol=1e-12)
    wider = [dict(x, mask_logits=torch.nn.functional.pad(x['mask_logits'], (0, 3), value=PAD_LOGIT)) for x in layers]
    batch = PaddedBatch.build(wider, sizes, targets)
    assert batch.gt_masks.shape == (3, max(gt_counts), max(sizes) + 3)
    torch.testing.assert_close(matcher.cost_matrices(batch), together, rtol=1e-12, atol=1e-12)


def test_optimal_not_greedy_assignment():
    """Centre costs [[1, 2], [2, 5]] (+ a far third query): greedy would take (0, 0) then
    (1, 1) (cost 6); the optimum is (0, 1) + (1, 0) (cost 4)."""
    matcher = MODELS.build(dict(type='HungarianMatcher', cls_cost=0, mask_bce_cost=0, mask_dice_cost=0,
                                center_cost=1))
    centers = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [50.0, 0, 0]]], dtype=torch.float64)
    target = gt([0, 1], [[True, False], [False, True]], [[1.0, 0, 0], [-2.0, 0, 0]])
    pred = layer(torch.zeros(1, 3, 3, dtype=torch.float64), [torch.zeros(3, 2, dtype=torch.float64)], centers)
    ((rows, cols), ), = match(matcher, [pred], [2], [target])
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]


def test_masks_and_classes_decide_the_match():
    """Query 2 predicts GT 0's mask and class, query 0 GT 1's; query 1 is background."""
    matcher = MODELS.build(dict(type='HungarianMatcher'))
    gt_masks = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    masks = torch.full((3, 5), -8.0, dtype=torch.float64)
    masks[2, :2] = 8
    masks[0, 3:] = 8
    cls = torch.full((1, 3, 4), -4.0, dtype=torch.float64)
    cls[0, 2, 1] = 4
    cls[0, 0, 2] = 4
    cls[0, 1, 3] = 4  # no-object
    target = gt([1, 2], gt_masks, [[0.0, 0, 0], [0.0, 0, 0]])
    ((rows, cols), ), = match(matcher, [layer(cls, [masks], torch.zeros(1, 3, 3, dtype=torch.float64))], [5],
                              [target])
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (2, 0)]


def test_scenes_without_gt_and_one_host_transfer(monkeypatch):
    g = torch.Generator().manual_seed(1)
    matcher = MODELS.build(dict(type='HungarianMatcher'))
    targets = [gt([0, 1], torch.rand(2, 7, generator=g) > 0.3, torch.randn(2, 3, generator=g)),
               gt(torch.zeros(0), torch.zeros(0, 5), torch.zeros(0, 3)),
               gt([2], torch.rand(1, 4, generator=g) > 0.3, torch.randn(1, 3, generator=g))]
    sizes = (7, 5, 4)
    layers = [layer(torch.randn(3, 4, 4, generator=g), [torch.randn(4, n, generator=g) for n in sizes],
                    torch.randn(3, 4, 3, generator=g)) for _ in range(3)]
    transfers = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, 'cpu', lambda self, *a, **k: transfers.append(1) or original(self, *a, **k))
    matches = match(matcher, layers, sizes, targets)
    assert len(transfers) == 1
    assert len(matches) == 3 and all(len(m) == 3 for m in matches)
    for per_scene in matches:
        assert [len(r) for r, _ in per_scene] == [2, 0, 1]
        assert sorted(per_scene[0][1].tolist()) == [0, 1] and per_scene[2][1].tolist() == [0]
        assert all(r.dtype == torch.long for r, _ in per_scene)


def test_gt_masks_of_another_superpoint_count_are_refused():
    target = gt([0], [[True, False, True]], [[0.0, 0, 0]])
    with pytest.raises(ValueError, match='scene 0: GT sp_masks cover 3 superpoints, the predicted masks 2'):
        PaddedBatch.build([layer(torch.zeros(1, 2, 3), [torch.zeros(2, 2)], torch.zeros(1, 2, 3))], [2], [target])


def test_non_finite_costs_raise():
    matcher = MODELS.build(dict(type='HungarianMatcher'))
    cls = torch.zeros(1, 2, 3)
    cls[0, 1, 0] = float('nan')
    target = gt([0], [[True, False]], [[0.0, 0, 0]])
    with pytest.raises(ValueError, match='non-finite'):
        match(matcher, [layer(cls, [torch.zeros(2, 2)], torch.zeros(1, 2, 3))], [2], [target])
