"""tools/benchmark.py: the benchmarks' scenes have ScanNet's sizes, and it runs end to end on the CPU."""
import json
import os

import numpy as np
import torch

from _tools import ROOT, TINY_MODEL, load_tool, one_thread, run_tool  # noqa: F401 (fixture: one torch thread)

from ikne_plugin.datasets.synthetic_scene import synthetic_scene
from ikne_plugin.models.task_modules.padded_batch import PAD_LOGIT


def test_scenes_have_scannet_size():
    scene = synthetic_scene(150_000, seed=0)
    voxels = len(np.unique(np.floor(scene['points'][:, :3] / 0.02), axis=0))
    assert 120_000 <= voxels <= 135_000  # MAFT's measurement: 129k
    assert 2_500 <= scene['superpoints'].max() + 1 <= 3_300  # 2,819
    assert (scene['instance'] >= 0).any() and (scene['instance'] < 0).any()


def test_runs_on_the_cpu(tmp_path):
    out = tmp_path / 'bench.json'
    run_tool('benchmark', os.path.join(ROOT, 'configs', 'ikne_trans_synthetic.py'), '--device', 'cpu',
             '--points', '20000', '--batch', '2', '--repeats', '1', '--warmup', '0', '--json', out,
             '--cfg-options', *TINY_MODEL)
    result = json.loads(out.read_text())['float32']
    inference, train = result['inference'], result['train']
    assert list(inference['stages_ms']) == ['voxelize', 'backbone', 'superpoint pooling', 'decoder',
                                            'post-processing', 'to host']
    assert list(train['stages_ms']) == ['voxelize', 'backbone', 'superpoint pooling', 'decoder',
                                        'instance assignment', 'IKA loss', 'matching', 'set losses',
                                        'ISG loss', 'losses', 'backward',
                                        'optimizer step']
    for total, stages in ((inference['total_ms'], inference['stages_ms']), (train['step_ms'], train['stages_ms'])):
        assert all(ms >= 0 for ms in stages.values())
        assert abs(sum(stages.values()) - total) <= 0.05 * total + 5  # the stages make up the run
    assert train['voxels'] > inference['voxels'] > 0 and inference['superpoints'] > 1000
    assert result['ratios']['step_over_backbone_fwd_bwd'] == train['step_ms'] / train['backbone_fwd_bwd_ms']
    nodes = train['autograd_nodes']  # the decoder's linear layers are among a step's nodes
    assert 'AddmmBackward0' in [n['node'] for n in nodes] and all(n['count'] > 0 for n in nodes)
    assert [n['host_ms'] for n in nodes] == sorted((n['host_ms'] for n in nodes), reverse=True)
    assert train['kernels'] == train['ops'] == []  # device time: CUDA only


def test_idle_by_stage_counts_the_gaps_between_busy_intervals():
    idle_by_stage = load_tool('benchmark').idle_by_stage
    marks = [(0, 'start'), (100, 'a'), (250, 'b'), (400, 'a')]  # us; stage 'a' met twice
    busy = [(10, 40), (30, 60), (90, 180), (300, 320), (390, 500)]  # overlapping and past the end
    idle = idle_by_stage(marks, busy)
    # a: [0, 100) idle 10 + 30, [250, 400) idle 50 + 70; b: [100, 250) idle 70
    assert idle == {'a': 0.16, 'b': 0.07}
    assert idle_by_stage(marks, []) == {'a': 0.25, 'b': 0.15}


def test_real_mask_logits_leave_out_the_padding():
    """amp_deviation compares the masks of the real superpoints only."""
    masks = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[7.0, 8.0, PAD_LOGIT], [9.0, 10.0, PAD_LOGIT]]])
    preds = dict(layers=[dict(mask_logits=masks)], sp_counts=[3, 2])
    assert load_tool('benchmark').real_mask_logits(preds).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
