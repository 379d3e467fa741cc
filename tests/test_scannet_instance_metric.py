"""Tests of `ScanNetInstanceMetric`: registry, Runner-style evaluation, mapping of class
indices to NYU40 ids, the logged table, submission files and its errors."""
import logging
import os

import numpy as np
import pytest
import torch
from mmdet3d.registry import METRICS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger

from ikne_plugin.evaluation import ScanNetInstanceMetric, scannet_instance_eval
from ikne_plugin.evaluation.functional import (SCANNET_INSTANCE_CLASS_IDS,
                                               SCANNET_INSTANCE_CLASS_NAMES)


def random_scene(rng, num_points=600, num_classes=18):
    """GT ids in the benchmark encoding and a prediction in class indices."""
    cuts = np.sort(rng.choice(np.arange(1, num_points), 7, replace=False))
    runs = np.split(np.arange(num_points), cuts)
    class_index = rng.integers(0, 3, len(runs))  # few classes: matches and confusions
    ids = np.array(SCANNET_INSTANCE_CLASS_IDS[:num_classes])
    gt_ids = np.zeros(num_points, np.int64)
    for number, (run, cls) in enumerate(zip(runs, class_index), start=1):
        gt_ids[run] = 0 if number == 1 else ids[cls] * 1000 + number
    num_masks = int(rng.integers(0, 8))
    masks = np.zeros((num_masks, num_points), bool)
    labels = rng.integers(0, 3, num_masks)
    for k in range(num_masks):
        run = runs[rng.integers(len(runs))]
        masks[k, run[rng.random(len(run)) < 0.8]] = True
    return gt_ids, masks, labels, rng.random(num_masks)


def data_sample(name, gt_ids, masks, labels, scores):
    """A packed val sample with the model's prediction, as the contract describes."""
    sample = Det3DDataSample(metainfo=dict(scene_name=name, sample_idx=name))
    sample.pred_pts_seg = PointData(pts_instance_mask=torch.from_numpy(masks),
                                    instance_labels=torch.from_numpy(labels),
                                    instance_scores=torch.from_numpy(scores).float())
    sample.eval_ann_info = dict(gt_ids=gt_ids)
    return sample


def expected_results(scenes, class_ids=SCANNET_INSTANCE_CLASS_IDS, class_names=None):
    ids = np.array(class_ids)
    preds = [dict(masks=m, labels=ids[l], scores=torch.from_numpy(s).float().numpy())
             for _, m, l, s in scenes]
    return scannet_instance_eval([s[0] for s in scenes], preds, valid_class_ids=class_ids,
                                 class_names=class_names)


def assert_same_results(results, expected):
    assert results.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, rtol=0, atol=1e-12, equal_nan=True)


def test_registered_in_mmdet3d_metrics():
    # (METRICS.build would first import all of mmdet3d.evaluation: slow, not our concern)
    assert METRICS.module_dict['ScanNetInstanceMetric'] is ScanNetInstanceMetric


def test_evaluator_runs_it_like_the_runner_and_logs_the_table():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(5)]
    evaluator = Evaluator([ScanNetInstanceMetric()])
    dataset_classes = tuple(n if n != 'showercurtrain' else 'shower curtain'
                            for n in SCANNET_INSTANCE_CLASS_NAMES)  # as our dataset spells it
    evaluator.dataset_meta = dict(classes=dataset_classes,
                                  valid_class_ids=SCANNET_INSTANCE_CLASS_IDS)
    samples = [data_sample(f'scene{i:04d}_00', *s) for i, s in enumerate(scenes)]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        for begin in range(0, len(samples), 2):  # batches of 2; samples become dicts
            evaluator.process(data_samples=samples[begin:begin + 2], data_batch={})
        results = evaluator.evaluate(len(samples))
    finally:
        logger.removeHandler(handler)
    assert_same_results(results, expected_results(scenes))
    assert not np.isnan(results['all_ap'])
    assert 'showercurtrain_ap' in results  # stable keys whatever the dataset calls it
    table = '\n'.join(record.getMessage() for record in records)
    assert 'AP_50%' in table and 'otherfurniture' in table and 'average' in table


def test_takes_data_samples_directly_and_maps_custom_class_ids():
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng, num_classes=3) for _ in range(4)]
    class_ids, names = (3, 4, 5), ('cabinet', 'bed', 'chair')
    metric = ScanNetInstanceMetric()
    metric.dataset_meta = dict(classes=names, valid_class_ids=class_ids)
    metric.process({}, [data_sample(f's{i}', *s) for i, s in enumerate(scenes)])
    results = metric.compute_metrics(metric.results)
    assert_same_results(results, expected_results(scenes, class_ids, names))
    assert 'chair_ap50%' in results and 'sofa_ap' not in results


def test_keeps_per_scene_summaries_not_masks():
    rng = np.random.default_rng(5)
    scenes = [random_scene(rng, num_points=100_000) for _ in range(3)]
    metric = ScanNetInstanceMetric()
    metric.process({}, [data_sample(f's{i}', *s) for i, s in enumerate(scenes)])
    kept = sum(value.nbytes for result in metric.results for value in result.values())
    masks = sum(s[1].nbytes for s in scenes)
    assert kept < masks / 20, (kept, masks)
    assert_same_results(metric.compute_metrics(metric.results), expected_results(scenes))


def test_writes_the_submission_and_format_only_needs_no_gt(tmp_path):
    rng = np.random.default_rng(2)
    scenes = [random_scene(rng) for _ in range(3)]
    scenes[0] = (scenes[0][0], scenes[0][1][:0], scenes[0][2][:0], scenes[0][3][:0])
    metric = ScanNetInstanceMetric(submission_prefix=str(tmp_path / 'val'))
    metric.process({}, [data_sample(f'scene{i:04d}_00', *s) for i, s in enumerate(scenes)])
    metric.compute_metrics(metric.results)
    for i, (_, masks, labels, _) in enumerate(scenes):
        lines = (tmp_path / 'val' / f'scene{i:04d}_00.txt').read_text().splitlines()
        assert [int(line.split()[1]) for line in lines] == [
            SCANNET_INSTANCE_CLASS_IDS[label] for label in labels]
        for k, line in enumerate(lines):
            written = np.loadtxt(tmp_path / 'val' / line.split()[0], dtype=np.int64)
            np.testing.assert_array_equal(written, masks[k])

    test_metric = ScanNetInstanceMetric(submission_prefix=str(tmp_path / 'test'),
                                        format_only=True)
    sample = data_sample('scene0707_00', *scenes[1])
    del sample.eval_ann_info
    test_metric.process({}, [sample])
    assert test_metric.compute_metrics(test_metric.results) == {}
    assert os.path.isfile(tmp_path / 'test' / 'scene0707_00.txt')


def test_clear_errors():
    rng = np.random.default_rng(3)
    gt_ids, masks, labels, scores = random_scene(rng)
    while not len(labels):
        gt_ids, masks, labels, scores = random_scene(rng)
    sample = data_sample('scene0000_00', gt_ids, masks, labels, scores)
    del sample.eval_ann_info
    with pytest.raises(KeyError, match=r"scene scene0000_00: .*\['eval_ann_info'\]"):
        ScanNetInstanceMetric().process({}, [sample])

    with pytest.raises(ValueError, match=r'scene0000_00: instance_labels must be class '
                                         r'indices in \[0, 18\)'):
        ScanNetInstanceMetric().process(
            {}, [data_sample('scene0000_00', gt_ids, masks, labels + 18, scores)])

    with pytest.raises(ValueError, match='pts_instance_mask must be a bool'):
        ScanNetInstanceMetric().process({}, [data_sample('scene0000_00', gt_ids,
                                                         masks.astype(np.float32),
                                                         labels, scores)])
    with pytest.raises(ValueError, match='format_only=True needs a submission_prefix'):
        ScanNetInstanceMetric(format_only=True)
