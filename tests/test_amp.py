"""Mixed precision: the criterion computes in float32 under autocast (CPU); on a GPU, float16
autocast of the MAFT-size model stays within the benchmark's stated tolerance of float32."""
import os

import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.structures import InstanceData

import ikne_plugin.models  # noqa: F401  (registers the criterion)
from ikne_plugin.datasets.synthetic_scene import synthetic_scene
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT, pad_scenes
from _tools import ROOT, load_tool


def test_criterion_computes_in_float32_under_autocast():
    # 3,000 superpoints: mask overlaps counted in bfloat16 would be rounded, float16 sums large
    g = torch.Generator().manual_seed(0)
    criterion = MODELS.build(dict(type='IKNECriterion', num_classes=4, ika_loss=dict(type='IKALoss'),
                                  isg_loss=dict(type='ISGLoss', rank=4)))
    sizes, queries = (3000, 2500), 12
    # inputs exactly representable in bfloat16, so both runs see the same numbers
    rand = lambda *shape: (torch.randn(*shape, generator=g) * 3).bfloat16()
    layers = [dict(cls_logits=rand(2, queries, 5), scores=rand(2, queries, 1), centers=rand(2, queries, 3),
                   mask_logits=pad_scenes([rand(queries, s) for s in sizes], PAD_LOGIT)) for _ in range(2)]
    preds = dict(layers=layers, sp_counts=list(sizes), queries=rand(2, queries, 16))
    gts = [InstanceData(labels_3d=torch.randint(0, 4, (5, ), generator=g),
                        sp_masks=torch.rand(5, s, generator=g) > 0.6, centers=torch.randn(5, 3, generator=g))
           for s in sizes]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = criterion(preds, gts)
    reference = criterion(dict(layers=[{k: v.float() for k, v in layer.items()} for layer in layers],
                               sp_counts=preds['sp_counts'], queries=preds['queries'].float()), gts)
    assert mixed.keys() == reference.keys()
    for key in reference:
        assert mixed[key].dtype == torch.float32, key
        torch.testing.assert_close(mixed[key], reference[key], rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_float16_autocast_matches_float32_on_cuda():
    benchmark = load_tool('benchmark')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(os.path.join(ROOT, 'configs', 'ikne_trans_scannet.py')).model).cuda()
    scenes = [benchmark.scene_inputs(synthetic_scene(50_000, seed), torch.device('cuda'))
              for seed in range(2)]
    batch = (dict(points=[p for p, _ in scenes]), [s for _, s in scenes])
    deviation = benchmark.amp_deviation(model, scenes[0], batch)
    assert deviation['within_tolerance'], deviation
    # the whole inference under autocast: float32 scores, masks on the points
    model.eval()
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
        (sample, ) = model.predict(dict(points=[scenes[0][0]]), [scenes[0][1]])
    result = sample.pred_pts_seg
    assert result.instance_scores.dtype == torch.float32 and torch.isfinite(result.instance_scores).all()
    assert result.pts_instance_mask.shape[1] == 50_000
