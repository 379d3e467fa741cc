"""IKALoss / ISGLoss: values against explicit loops, targets, normalisation, gradients."""
import pytest
import torch
from mmdet3d.registry import MODELS

import ikne_plugin.models  # noqa: F401  (registers the losses)
from ikne_plugin.models.losses import assign_by_mask_iou, similarity_target, truncated_svd_reconstruction
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT, pad_scenes


def explicit_loss(sim, target, lam, low=None, high=None):
    """sum_{T=1} (S' - 1)^2 + lam * sum_{T=0} S'^2 with S' min-max normalised, by loops."""
    n = len(sim)
    low = min(min(r) for r in sim) if low is None else low
    high = max(max(r) for r in sim) if high is None else high
    total = 0.0
    for i in range(n):
        for j in range(n):
            s = (sim[i][j] - low) / (high - low)
            total += (s - 1) ** 2 if target[i][j] else lam * s ** 2
    return total


def gram(a, b):
    return [[sum(x * y for x, y in zip(a[i], b[j])) for j in range(len(b))] for i in range(len(a))]


def test_targets_by_hand():
    assignment = torch.tensor([0, 0, -1, 1, 1, -1])
    same = similarity_target(assignment, 'same_instance').int().tolist()
    assert same == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0],
                    [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]
    assert torch.equal(similarity_target(assignment, 'identity'), torch.eye(6, dtype=torch.bool))


def test_assignment_by_mask_iou():
    logits = torch.tensor([[5.0, 5.0, -5.0, -5.0],   # == GT 0 (IoU 1)
                           [5.0, -5.0, -5.0, -5.0],  # IoU 0.5 with GT 0: assigned (>= 0.5)
                           [-5.0, -5.0, 5.0, -5.0],  # IoU 0.5 with GT 1, 0 with GT 0
                           [-5.0, 5.0, 5.0, 5.0]])   # IoU 1/4 with GT 0, 2/3 with GT 1 -> GT 1
    gt = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert assign_by_mask_iou(logits, gt).tolist() == [0, 0, 1, 1]
    assert assign_by_mask_iou(logits, gt, iou_thr=0.6).tolist() == [0, -1, -1, 1]
    assert assign_by_mask_iou(logits, gt[:0]).tolist() == [-1, -1, -1, -1]
    # batched with a second scene of one GT (padded: an empty GT mask) and two padded superpoints
    padded = pad_scenes([gt, torch.tensor([[1, 1]], dtype=torch.bool)])
    second = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    scenes = pad_scenes([logits, second], PAD_LOGIT)
    assert assign_by_mask_iou(scenes, padded).tolist() == [[0, 0, 1, 1], [0, 0, 0, -1]]


@pytest.mark.parametrize('target', ['same_instance', 'identity'])
def test_ika_value_by_loops(target):
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)]
    assignments = [torch.tensor([0, 0, -1, 1, 1]), torch.tensor([-1, 2, 2, 2])]
    loss = MODELS.build(dict(type='IKALoss', target=target, off_target_weight=0.0051, loss_weight=0.001))
    expected = 0.0
    for f, a in zip(feats, assignments):
        fl, al = f.tolist(), a.tolist()
        t = [[i == j or (target == 'same_instance' and al[i] == al[j] >= 0) for j in range(len(al))]
             for i in range(len(al))]
        expected += explicit_loss(gram(fl, fl), t, 0.0051)
    assert loss(feats, assignments).item() == pytest.approx(0.001 * expected, rel=1e-12)


def test_identity_target_is_the_released_formula_with_batch_normalisation():
    """Released IKNE: S = Q Q^T normalised by the batch's min/max, sum (S_ii - 1)^2 +
    0.0051 sum_{i != j} S_ij^2 summed over the scenes, times 0.001."""
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(2, 6, 4, generator=g, dtype=torch.float64)
    sim = queries @ queries.transpose(1, 2)
    sim = (sim - sim.min()) / (sim.max() - sim.min())
    released = sum(torch.diagonal(s).sub(1).pow(2).sum() + 0.0051 * (s - torch.diag(torch.diag(s))).pow(2).sum()
                   for s in sim)
    loss = MODELS.build(dict(type='IKALoss', target='identity', normalize='batch'))
    torch.testing.assert_close(loss(list(queries)), 0.001 * released)
    per_scene = MODELS.build(dict(type='IKALoss', target='identity'))(list(queries))
    assert not torch.isclose(per_scene, 0.001 * released)


def test_isg_reconstruction_and_value_by_svd():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(7, 5, generator=g, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(f, full_matrices=False)
    low = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
    torch.testing.assert_close(truncated_svd_reconstruction(f, 2), low)
    assert truncated_svd_reconstruction(f, 5) is f
    assignment = torch.tensor([0, 0, 1, -1, 1, 1, -1])
    loss = MODELS.build(dict(type='ISGLoss', rank=2, loss_weight=0.5))
    al = assignment.tolist()
    t = [[i == j or al[i] == al[j] >= 0 for j in range(7)] for i in range(7)]
    expected = 0.5 * explicit_loss(gram(low.tolist(), f.tolist()), t, 0.0051)
    assert loss([f], [assignment]).item() == pytest.approx(expected, rel=1e-10)


def test_gradcheck_ika_and_isg():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assignment = [torch.tensor([0, 0, 1, -1, 1, 2])]
    ika = MODELS.build(dict(type='IKALoss', loss_weight=1.0))
    isg = MODELS.build(dict(type='ISGLoss', rank=2, loss_weight=1.0))
    assert torch.autograd.gradcheck(lambda x: ika([x], assignment), (f, ))
    assert torch.autograd.gradcheck(lambda x: isg([x], assignment), (f, ))
    assert torch.autograd.gradcheck(lambda x: truncated_svd_reconstruction(x, 3), (f, ))


def test_isg_gradient_with_repeated_singular_values():
    """Singular values (3, 3, 1, 0.5): repeated inside the kept rank-2 subspace. The
    projector form stays differentiable (gradcheck); a rank-deficient F gives finite grads."""
    g = torch.Generator().manual_seed(4)
    u = torch.linalg.qr(torch.randn(6, 4, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    f = (u @ torch.diag(torch.tensor([3.0, 3.0, 1.0, 0.5], dtype=torch.float64)) @ v.T).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: truncated_svd_reconstruction(x, 2), (f, ))

    rank2 = (torch.randn(8, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 6, generator=g,
                                                                                 dtype=torch.float64))
    rank2.requires_grad_()
    torch.testing.assert_close(truncated_svd_reconstruction(rank2, 4), rank2)  # rank 2 < 4: unchanged
    isg = MODELS.build(dict(type='ISGLoss', rank=4, loss_weight=1.0))
    isg([rank2], [torch.tensor([0, 0, 1, 1, -1, -1, 2, 2])]).backward()
    assert torch.isfinite(rank2.grad).all() and rank2.grad.abs().sum() > 0


def test_isg_batched_over_scenes_equals_scene_by_scene():
    """All scenes share one batched eigendecomposition, scenes of fewer queries padded with zero
    rows: same loss and gradients as scene by scene; the batched projector's gradient checked too."""
    g = torch.Generator().manual_seed(5)
    feats = [torch.randn(n, 5, generator=g, dtype=torch.float64, requires_grad=True) for n in (6, 4, 6)]
    assignments = [torch.tensor([0, 0, 1, -1, 1, 2]), torch.tensor([-1] * 4), torch.tensor([0, 1, 2, 3, 4, 5])]
    isg = MODELS.build(dict(type='ISGLoss', rank=2, loss_weight=1.0))
    batched = isg(feats, assignments)
    alone = sum(isg([f], [a]) for f, a in zip(feats, assignments))
    torch.testing.assert_close(batched, alone)
    grads = [torch.autograd.grad(v, feats) for v in (batched, alone)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    stacked = torch.stack([feats[0], feats[2]]).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: truncated_svd_reconstruction(x, 2), (stacked, ))


@pytest.mark.parametrize('normalize', ['scene', 'batch'])
def test_scenes_of_different_sizes_by_loops(normalize):
    """Scenes of 5, 0 and 3 queries in one batch (padded inside): IKA, and ISG with the head's
    low-rank features, against explicit loops (the padding is in no range and no sum); finite
    gradients, checked by gradcheck."""
    g = torch.Generator().manual_seed(6)
    feats = [torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True) for n in (5, 0, 3)]
    low_rank = [torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True) for n in (5, 0, 3)]
    assignments = [torch.tensor([0, 0, -1, 1, 1]), torch.zeros(0, dtype=torch.long), torch.tensor([-1, 2, 2])]
    ika = MODELS.build(dict(type='IKALoss', normalize=normalize, loss_weight=1.0))
    isg = MODELS.build(dict(type='ISGLoss', normalize=normalize, loss_weight=1.0))
    for loss, left in ((ika, feats), (isg, low_rank)):
        sims = [gram(a.tolist(), f.tolist()) for a, f in zip(left, feats) if len(f)]
        low = min(min(min(r) for r in s) for s in sims) if normalize == 'batch' else None
        high = max(max(max(r) for r in s) for s in sims) if normalize == 'batch' else None
        targets = [[[i == j or a[i] == a[j] >= 0 for j in range(len(a))] for i in range(len(a))]
                   for a in (t.tolist() for t in assignments) if a]
        expected = sum(explicit_loss(s, t, 0.0051, low, high) for s, t in zip(sims, targets))
        inputs = dict(low_rank=low_rank) if loss is isg else {}
        assert loss(feats, assignments, **inputs).item() == pytest.approx(expected, rel=1e-12)
    assert torch.autograd.gradcheck(lambda a, c: ika([a, feats[1], c], assignments), (feats[0], feats[2]))
    assert torch.autograd.gradcheck(
        lambda a, c, la, lc: isg([a, feats[1], c], assignments, low_rank=[la, low_rank[1], lc]),
        (feats[0], feats[2], low_rank[0], low_rank[2]))


def test_options_and_inputs_are_checked():
    with pytest.raises(ValueError, match='target'):
        MODELS.build(dict(type='IKALoss', target='diagonal'))
    with pytest.raises(ValueError, match='normalize'):
        MODELS.build(dict(type='IKALoss', normalize='global'))
    with pytest.raises(ValueError, match='rank'):
        MODELS.build(dict(type='ISGLoss', rank=0))
    loss = MODELS.build(dict(type='IKALoss'))
    f = torch.randn(3, 2)
    with pytest.raises(ValueError, match='assignments'):
        loss([f])
    with pytest.raises(ValueError, match='shape'):
        loss([f], [torch.tensor([0, 1])])
    empty = torch.zeros(0, 2, requires_grad=True)
    assert loss([empty], [torch.zeros(0, dtype=torch.long)]).item() == 0
