"""Tests of the official ScanNet instance AP (`scannet_instance_eval`) and its writer.

The reference is `official_eval` below: a slow, literal re-statement of ScanNet's
BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py (assign_instances_for_scan,
evaluate_matches, compute_averages) and util_3d.get_instances, loop for loop, with dicts
of GT instances and predictions per scene. Only the file I/O is replaced by arrays and
the distance thresholds (inf / -inf in the benchmark, no-ops) are left out.
"""
import os
import warnings
from copy import deepcopy

import numpy as np
import pytest

from ikne_plugin.evaluation import scannet_instance_eval, write_scannet_submission
from ikne_plugin.evaluation.functional import (SCANNET_INSTANCE_CLASS_IDS,
                                               SCANNET_INSTANCE_CLASS_NAMES)

VALID_IDS = SCANNET_INSTANCE_CLASS_IDS
NAMES = SCANNET_INSTANCE_CLASS_NAMES
CHAIR, TABLE, SOFA = 5, 7, 6  # NYU40 ids
WALL = 1  # a NYU40 id outside the evaluated set


# ----------------------------------------------------------------------------------------
# The literal oracle.
def official_get_instances(ids, class_ids, class_labels, id2label):
    instances = {}
    for label in class_labels:
        instances[label] = []
    for instance_id in np.unique(ids):
        if instance_id == 0:
            continue
        label_id = int(instance_id // 1000)
        vert_count = int((ids == instance_id).sum())
        if label_id in class_ids:
            instances[id2label[label_id]].append(dict(
                instance_id=int(instance_id), label_id=label_id, vert_count=vert_count))
    return instances


def official_assign_instances_for_scan(scene, gt_ids, pred, class_ids, class_labels,
                                       min_region_size):
    id_to_label = dict(zip(class_ids, class_labels))
    gt_instances = official_get_instances(gt_ids, class_ids, class_labels, id_to_label)
    gt2pred = deepcopy(gt_instances)
    for label in gt2pred:
        for gt in gt2pred[label]:
            gt['matched_pred'] = []
    pred2gt = {}
    for label in class_labels:
        pred2gt[label] = []
    num_pred_instances = 0
    bool_void = np.logical_not(np.isin(gt_ids // 1000, class_ids))
    for k in range(len(pred['labels'])):
        label_id = int(pred['labels'][k])
        conf = float(pred['scores'][k])
        if label_id not in id_to_label:
            continue
        label_name = id_to_label[label_id]
        pred_mask = np.not_equal(pred['masks'][k], 0)
        num = np.count_nonzero(pred_mask)
        if num < min_region_size:
            continue
        pred_instance = {}
        pred_instance['filename'] = (scene, k)  # a unique key, as the mask file name is
        pred_instance['pred_id'] = num_pred_instances
        pred_instance['label_id'] = label_id
        pred_instance['vert_count'] = num
        pred_instance['confidence'] = conf
        pred_instance['void_intersection'] = np.count_nonzero(
            np.logical_and(bool_void, pred_mask))
        matched_gt = []
        for gt_num, gt_inst in enumerate(gt2pred[label_name]):
            intersection = np.count_nonzero(
                np.logical_and(gt_ids == gt_inst['instance_id'], pred_mask))
            if intersection > 0:
                gt_copy = gt_inst.copy()
                pred_copy = pred_instance.copy()
                gt_copy['intersection'] = intersection
                pred_copy['intersection'] = intersection
                matched_gt.append(gt_copy)
                gt2pred[label_name][gt_num]['matched_pred'].append(pred_copy)
        pred_instance['matched_gt'] = matched_gt
        num_pred_instances += 1
        pred2gt[label_name].append(pred_instance)
    return gt2pred, pred2gt


def official_evaluate_matches(matches, class_labels, min_region_size):
    overlaps = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
    ap = np.zeros((len(class_labels), len(overlaps)), float)
    for oi, overlap_th in enumerate(overlaps):
        pred_visited = {}
        for m in matches:
            for label_name in class_labels:
                for p in matches[m]['pred'][label_name]:
                    pred_visited[p['filename']] = False
        for li, label_name in enumerate(class_labels):
            y_true = np.empty(0)
            y_score = np.empty(0)
            hard_false_negatives = 0
            has_gt = False
            has_pred = False
            for m in matches:
                pred_instances = matches[m]['pred'][label_name]
                gt_instances = matches[m]['gt'][label_name]
                gt_instances = [gt for gt in gt_instances if gt['instance_id'] >= 1000
                                and gt['vert_count'] >= min_region_size]
                if gt_instances:
                    has_gt = True
                if pred_instances:
                    has_pred = True
                cur_true = np.ones(len(gt_instances))
                cur_score = np.ones(len(gt_instances)) * (-float('inf'))
                cur_match = np.zeros(len(gt_instances), dtype=bool)
                for gti, gt in enumerate(gt_instances):
                    found_match = False
                    for pred in gt['matched_pred']:
                        if pred_visited[pred['filename']]:
                            continue
                        overlap = float(pred['intersection']) / (
                            gt['vert_count'] + pred['vert_count'] - pred['intersection'])
                        if overlap > overlap_th:
                            confidence = pred['confidence']
                            if cur_match[gti]:
                                max_score = max(cur_score[gti], confidence)
                                min_score = min(cur_score[gti], confidence)
                                cur_score[gti] = max_score
                                cur_true = np.append(cur_true, 0)
                                cur_score = np.append(cur_score, min_score)
                                cur_match = np.append(cur_match, True)
                            else:
                                found_match = True
                                cur_match[gti] = True
                                cur_score[gti] = confidence
                                pred_visited[pred['filename']] = True
                    if not found_match:
                        hard_false_negatives += 1
                cur_true = cur_true[cur_match]
                cur_score = cur_score[cur_match]
                for pred in pred_instances:
                    found_gt = False
                    for gt in pred['matched_gt']:
                        overlap = float(gt['intersection']) / (
                            gt['vert_count'] + pred['vert_count'] - gt['intersection'])
                        if overlap > overlap_th:
                            found_gt = True
                            break
                    if not found_gt:
                        num_ignore = pred['void_intersection']
                        for gt in pred['matched_gt']:
                            if gt['instance_id'] < 1000:
                                num_ignore += gt['intersection']
                            if gt['vert_count'] < min_region_size:
                                num_ignore += gt['intersection']
                        proportion_ignore = float(num_ignore) / pred['vert_count']
                        if proportion_ignore <= overlap_th:
                            cur_true = np.append(cur_true, 0)
                            cur_score = np.append(cur_score, pred['confidence'])
                y_true = np.append(y_true, cur_true)
                y_score = np.append(y_score, cur_score)

            if has_gt and has_pred and len(y_score) == 0:
                # The official script raises IndexError here (y_true_sorted_cumsum[-1] of
                # an empty array); the implementation defines the AP as 0.
                ap_current = 0.0
            elif has_gt and has_pred:
                score_arg_sort = np.argsort(y_score)
                y_score_sorted = y_score[score_arg_sort]
                y_true_sorted = y_true[score_arg_sort]
                y_true_sorted_cumsum = np.cumsum(y_true_sorted)
                (thresholds, unique_indices) = np.unique(y_score_sorted, return_index=True)
                num_prec_recall = len(unique_indices) + 1
                num_examples = len(y_score_sorted)
                num_true_examples = y_true_sorted_cumsum[-1]
                precision = np.zeros(num_prec_recall)
                recall = np.zeros(num_prec_recall)
                y_true_sorted_cumsum = np.append(y_true_sorted_cumsum, 0)
                for idx_res, idx_scores in enumerate(unique_indices):
                    cumsum = y_true_sorted_cumsum[idx_scores - 1]
                    tp = num_true_examples - cumsum
                    fp = num_examples - idx_scores - tp
                    fn = cumsum + hard_false_negatives
                    p = float(tp) / (tp + fp)
                    r = float(tp) / (tp + fn)
                    precision[idx_res] = p
                    recall[idx_res] = r
                precision[-1] = 1.
                recall[-1] = 0.
                recall_for_conv = np.copy(recall)
                recall_for_conv = np.append(recall_for_conv[0], recall_for_conv)
                recall_for_conv = np.append(recall_for_conv, 0.)
                step_widths = np.convolve(recall_for_conv, [-0.5, 0, 0.5], 'valid')
                ap_current = np.dot(precision, step_widths)
            elif has_gt:
                ap_current = 0.0
            else:
                ap_current = float('nan')
            ap[li, oi] = ap_current
    return ap


def official_compute_averages(aps, class_labels):
    overlaps = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
    o50 = np.where(np.isclose(overlaps, 0.5))
    o25 = np.where(np.isclose(overlaps, 0.25))
    o_all_but_25 = np.where(np.logical_not(np.isclose(overlaps, 0.25)))
    with warnings.catch_warnings():  # nanmean of all-NaN slices
        warnings.simplefilter('ignore', RuntimeWarning)
        avg = {'all_ap': np.nanmean(aps[:, o_all_but_25]),
               'all_ap_50%': np.nanmean(aps[:, o50]),
               'all_ap_25%': np.nanmean(aps[:, o25])}
    for li, label_name in enumerate(class_labels):
        avg[f'{label_name}_ap'] = np.average(aps[li, o_all_but_25])
        avg[f'{label_name}_ap50%'] = np.average(aps[li, o50])
        avg[f'{label_name}_ap25%'] = np.average(aps[li, o25])
    return avg


def official_eval(gt_ids, preds, class_ids=VALID_IDS, class_labels=NAMES,
                  min_region_size=100):
    class_ids = [int(i) for i in class_ids]
    matches = {}
    for scene, (scene_gt_ids, pred) in enumerate(zip(gt_ids, preds)):
        gt2pred, pred2gt = official_assign_instances_for_scan(
            scene, scene_gt_ids, pred, class_ids, class_labels, min_region_size)
        matches[scene] = {'gt': gt2pred, 'pred': pred2gt}
    aps = official_evaluate_matches(matches, class_labels, min_region_size)
    return official_compute_averages(aps, class_labels)


# ----------------------------------------------------------------------------------------
# Random multi-scene cases: overlapping masks, void points, small GT, merged GT (several
# matches at IoU 0.25), duplicates, tied scores, labels outside the evaluated set,
# scenes without predictions or without GT, points in mesh-like runs or shuffled.
def random_scene(rng, num_points, min_region_size):
    cuts = np.sort(rng.choice(np.arange(1, num_points), rng.integers(3, 14), replace=False))
    gt_ids = np.zeros(num_points, np.int64)
    instances = []
    no_gt = rng.random() < 0.15
    for number, run in enumerate(np.split(np.arange(num_points), cuts), start=1):
        kind = rng.random()
        if kind < 0.2 or no_gt:
            continue  # unannotated: id 0
        label = WALL if kind < 0.3 else int(rng.choice([CHAIR, TABLE, SOFA]))
        gt_ids[run] = label * 1000 + number
        instances.append((label, run))
    if rng.random() < 0.5:  # not in runs: GT bits spread over all packed words
        order = rng.permutation(num_points)
        gt_ids = gt_ids[order]
        instances = [(label, np.flatnonzero(np.isin(order, run))) for label, run in instances]

    masks, labels = [], []
    for _ in range(rng.integers(0, 14) if rng.random() > 0.1 else 0):
        kind = rng.random()
        if kind < 0.45 and instances:
            label, points = instances[rng.integers(len(instances))]
        elif kind < 0.6 and instances:
            label = instances[rng.integers(len(instances))][0]
            runs = [run for lab, run in instances if lab == label]
            pick = rng.choice(len(runs), min(len(runs), rng.integers(2, 4)), replace=False)
            points = np.concatenate([runs[i] for i in pick])
        elif kind < 0.7 and masks:
            label, points = labels[-1], np.flatnonzero(masks[-1])
        else:
            label = int(rng.choice([CHAIR, TABLE, SOFA]))
            start = rng.integers(num_points)
            stop = min(num_points, start + rng.integers(1, 3 * min_region_size))
            points = np.arange(start, stop)
        mask = np.zeros(num_points, bool)
        mask[points] = True
        mask &= rng.random(num_points) >= rng.choice([0.0, 0.1, 0.3])
        mask[rng.integers(0, num_points, rng.integers(0, min_region_size))] = True
        if rng.random() < 0.2:
            label = int(rng.choice([CHAIR, TABLE, SOFA, 3, WALL, 40, 0]))
        masks.append(mask)
        labels.append(label)
    num_masks = len(masks)
    tied = rng.random() < 0.5
    scores = rng.choice([0.2, 0.5, 0.9], num_masks) if tied else rng.random(num_masks)
    pred = dict(masks=np.array(masks, bool).reshape(num_masks, num_points),
                labels=np.array(labels, np.int64), scores=scores)
    return gt_ids, pred


def assert_same_results(results, expected):
    assert results.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(results[key], value, rtol=0, atol=1e-12,
                                   equal_nan=True, err_msg=key)


@pytest.mark.parametrize('seed', range(4))
def test_matches_official_script_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        min_region_size = int(rng.choice([5, 10, 20]))
        scenes = [random_scene(rng, int(rng.integers(100, 400)), min_region_size)
                  for _ in range(rng.integers(1, 5))]
        gt_ids, preds = [s[0] for s in scenes], [s[1] for s in scenes]
        assert_same_results(
            scannet_instance_eval(gt_ids, preds, min_region_size=min_region_size),
            official_eval(gt_ids, preds, min_region_size=min_region_size))


def test_matches_official_script_with_default_region_size_and_custom_classes():
    rng = np.random.default_rng(100)
    scenes = [random_scene(rng, 3000, 100) for _ in range(4)]
    gt_ids, preds = [s[0] for s in scenes], [s[1] for s in scenes]
    assert_same_results(scannet_instance_eval(gt_ids, preds),
                        official_eval(gt_ids, preds))
    ids, names = (CHAIR, TABLE, 3), ('chair', 'table', 'cabinet')
    results = scannet_instance_eval(gt_ids, preds, valid_class_ids=ids, class_names=names)
    assert_same_results(results, official_eval(gt_ids, preds, ids, names))
    assert set(results) == {'all_ap', 'all_ap_50%', 'all_ap_25%'} | {
        f'{n}_{k}' for n in names for k in ('ap', 'ap50%', 'ap25%')}


# ----------------------------------------------------------------------------------------
# Hand-made cases with known answers.
def scene_of(*segments):
    """gt_ids of consecutive segments (gt id, number of points)."""
    return np.concatenate([np.full(count, gt_id, np.int64) for gt_id, count in segments])


def prediction(*entries, num_points):
    """A prediction from (points, NYU40 label, score) entries."""
    masks = np.zeros((len(entries), num_points), bool)
    for k, (points, _, _) in enumerate(entries):
        masks[k, points] = True
    return dict(masks=masks, labels=np.array([e[1] for e in entries], np.int64),
                scores=np.array([e[2] for e in entries], float))


def test_perfect_predictions_give_one_and_classes_without_gt_nan():
    # chair 300 points, void 200, table 150, a small chair (50 < 100), wall 400.
    gt = scene_of((5001, 300), (0, 200), (7002, 150), (5003, 50), (1004, 400))
    pred = prediction((np.arange(0, 300), CHAIR, 0.3), (np.arange(500, 650), TABLE, 0.8),
                      num_points=len(gt))
    gt2 = scene_of((0, 100), (6001, 120))
    pred2 = prediction((np.arange(100, 220), SOFA, 0.1), num_points=len(gt2))
    results = scannet_instance_eval([gt, gt2], [pred, pred2])
    for key, value in results.items():
        if key.split('_')[0] in ('all', 'chair', 'table', 'sofa'):
            assert value == 1.0, key
        else:
            assert np.isnan(value), key


def test_prediction_on_the_wrong_class_gives_zero():
    gt = scene_of((5001, 300), (0, 100))
    pred = prediction((np.arange(0, 300), TABLE, 0.9), num_points=len(gt))
    results = scannet_instance_eval([gt], [pred])
    assert results['chair_ap'] == results['chair_ap50%'] == results['chair_ap25%'] == 0.0
    assert np.isnan(results['table_ap'])  # no table GT: NaN, left out of the means
    assert results['all_ap'] == results['all_ap_50%'] == results['all_ap_25%'] == 0.0


@pytest.mark.parametrize('duplicate_score', [0.8, 0.95])
def test_duplicate_prediction_lowers_ap_as_the_official_script(duplicate_score):
    # Two chairs, both predicted exactly (scores 0.9 and 0.7), chair 1 a second time.
    # Chair 1 keeps the higher of its two scores, the lower becomes a false positive:
    # entries by ascending score (0.7 TP, lower-of-pair FP, higher-of-pair TP), no hard FN.
    # Points (precision, recall) at each distinct score, then the artificial (1, 0):
    #   >= 0.7: 2 TP 1 FP -> (2/3, 1); >= middle: 1 TP 1 FP -> (1/2, 1/2);
    #   >= top: 1 TP -> (1, 1/2); (1, 0).
    # Steps (r_{i-1} - r_{i+1}) / 2 with r_{-1} = r_0, r_end = 0: 1/4 each, so
    # AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24; without the duplicate it would be 1.
    gt = scene_of((5001, 200), (5002, 200), (0, 50))
    pred = prediction((np.arange(0, 200), CHAIR, 0.9), (np.arange(0, 200), CHAIR, duplicate_score),
                      (np.arange(200, 400), CHAIR, 0.7), num_points=len(gt))
    results = scannet_instance_eval([gt], [pred])
    for key in ('chair_ap', 'chair_ap50%', 'chair_ap25%', 'all_ap'):
        assert results[key] == pytest.approx(19 / 24, abs=1e-15), key
    without = dict(masks=pred['masks'][[0, 2]], labels=pred['labels'][[0, 2]],
                   scores=pred['scores'][[0, 2]])
    assert scannet_instance_eval([gt], [without])['chair_ap'] == 1.0


def test_iou_exactly_at_a_threshold_does_not_match():
    # Chair 1: a prediction on 100 of its 200 points, IoU exactly 0.5: not a match at
    # 0.5 (strict >), a match at 0.25. Sofa: 100 of 400 points, IoU exactly 0.25: no match.
    # Table: 101 of 200 points, IoU 0.505: a match at 0.5, not at 0.55.
    gt = scene_of((5001, 200), (6002, 400), (7003, 200))
    pred = prediction((np.arange(0, 100), CHAIR, 0.9), (np.arange(200, 300), SOFA, 0.9),
                      (np.arange(600, 701), TABLE, 0.9), num_points=len(gt))
    results = scannet_instance_eval([gt], [pred])
    assert results['chair_ap50%'] == 0.0 and results['chair_ap25%'] == 1.0
    assert results['chair_ap'] == 0.0
    assert results['sofa_ap25%'] == 0.0
    assert results['table_ap50%'] == 1.0 and results['table_ap'] == pytest.approx(1 / 9)


def test_prediction_mostly_on_void_is_ignored_not_a_false_positive():
    # A chair predicted exactly (score 0.5) and a higher-scored chair prediction lying on
    # unannotated and wall points. Ignored (its void share 1 > every threshold), AP = 1;
    # counted as a false positive it would give (1/2 * 1/2) = 0.25.
    gt = scene_of((5001, 200), (0, 150), (1002, 150))
    pred = prediction((np.arange(0, 200), CHAIR, 0.5), (np.arange(200, 500), CHAIR, 0.9),
                      num_points=len(gt))
    assert scannet_instance_eval([gt], [pred])['chair_ap'] == 1.0
    # Half on void, half on a table: ignored where 0.5 > threshold (0.25), a false
    # positive at 0.5 (0.5 <= 0.5).
    gt = scene_of((5001, 200), (0, 150), (1002, 150), (7003, 150))
    pred = prediction((np.arange(0, 200), CHAIR, 0.5),
                      (np.r_[np.arange(200, 350), np.arange(500, 650)], CHAIR, 0.9),
                      num_points=len(gt))
    results = scannet_instance_eval([gt], [pred])
    assert results['chair_ap25%'] == 1.0
    assert results['chair_ap50%'] == 0.25


def test_prediction_on_a_small_gt_instance_is_ignored():
    # The second chair has 60 < 100 points: it does not count, and a prediction covering
    # it (IoU > threshold with it) is neither a match nor a false positive.
    gt = scene_of((5001, 200), (5002, 60), (0, 100))
    pred = prediction((np.arange(0, 200), CHAIR, 0.5), (np.arange(200, 360), CHAIR, 0.9),
                      num_points=len(gt))
    assert scannet_instance_eval([gt], [pred])['chair_ap'] == 1.0


# ----------------------------------------------------------------------------------------
# Input validation.
def good_scene():
    gt = scene_of((5001, 200), (0, 50))
    return gt, prediction((np.arange(0, 200), CHAIR, 0.5), num_points=len(gt))


def test_rejects_masks_of_the_wrong_point_count():
    gt, pred = good_scene()
    bad = dict(pred, masks=pred['masks'][:, :-1])
    with pytest.raises(ValueError, match=r'scene 1: masks must have shape \[K, 250\]'):
        scannet_instance_eval([gt, gt], [pred, bad])


def test_rejects_labels_or_scores_of_the_wrong_length():
    gt, pred = good_scene()
    with pytest.raises(ValueError, match='scene 0: labels must be 1 integer'):
        scannet_instance_eval([gt], [dict(pred, labels=np.array([5, 5]))])
    with pytest.raises(ValueError, match='scene 0: scores must be 1 real'):
        scannet_instance_eval([gt], [dict(pred, scores=np.array([]))])


def test_rejects_nan_scores():
    gt, pred = good_scene()
    with pytest.raises(ValueError, match='scene 2: scores must be finite'):
        scannet_instance_eval([gt] * 3, [pred, pred, dict(pred, scores=np.array([np.nan]))])


def test_rejects_other_bad_input():
    gt, pred = good_scene()
    with pytest.raises(ValueError, match='gt_ids has 2 scenes but preds has 1'):
        scannet_instance_eval([gt, gt], [pred])
    with pytest.raises(ValueError, match='no scenes to evaluate'):
        scannet_instance_eval([], [])
    with pytest.raises(ValueError, match=r"scene 0: the prediction lacks \['scores'\]"):
        scannet_instance_eval([gt], [dict(masks=pred['masks'], labels=pred['labels'])])
    with pytest.raises(ValueError, match='scene 0: gt_ids must be >= 0'):
        scannet_instance_eval([gt - 1], [pred])
    with pytest.raises(ValueError, match='scene 0: masks must be bool or 0/1 ints'):
        scannet_instance_eval([gt], [dict(pred, masks=pred['masks'].astype(float))])
    with pytest.raises(ValueError, match='class_names has 1 names'):
        scannet_instance_eval([gt], [pred], valid_class_ids=(5, 7), class_names=('chair',))


# ----------------------------------------------------------------------------------------
# The submission writer.
def read_submission(out_dir, scene_names, num_points):
    """Predictions read back from a benchmark submission, as the benchmark reads it."""
    preds = []
    for name, num in zip(scene_names, num_points):
        with open(os.path.join(out_dir, f'{name}.txt')) as f:
            lines = [line.split(' ') for line in f.read().splitlines()]
        masks = [np.loadtxt(os.path.join(out_dir, path), dtype=np.int64, ndmin=1)
                 for path, _, _ in lines]
        preds.append(dict(masks=np.array(masks).reshape(len(lines), num) != 0,
                          labels=np.array([int(label) for _, label, _ in lines], np.int64),
                          scores=np.array([float(score) for _, _, score in lines])))
    return preds


def test_submission_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    scenes = [random_scene(rng, 400, 20) for _ in range(3)]
    gt_ids, preds = [s[0] for s in scenes], [s[1] for s in scenes]
    for pred in preds:  # the format keeps 4 decimals
        pred['scores'] = np.round(pred['scores'], 4)
    names = ['scene0011_00', 'scene0011_01', 'scene0015_00']
    write_scannet_submission(str(tmp_path), names, preds)

    written = sorted(os.listdir(tmp_path))
    assert written == sorted(['predicted_masks'] + [f'{n}.txt' for n in names])
    masks_written = os.listdir(tmp_path / 'predicted_masks')
    assert len(masks_written) == sum(len(p['labels']) for p in preds)
    assert not any(name.endswith('.tmp') for name in masks_written)
    if len(preds[0]['labels']):
        first = (tmp_path / 'scene0011_00.txt').read_text().splitlines()[0]
        assert first == (f'predicted_masks/scene0011_00_000.txt {preds[0]["labels"][0]} '
                         f'{preds[0]["scores"][0]:.4f}')
    back = read_submission(str(tmp_path), names, [len(g) for g in gt_ids])
    for pred, read in zip(preds, back):
        np.testing.assert_array_equal(read['masks'], pred['masks'])
        np.testing.assert_array_equal(read['labels'], pred['labels'])
    assert_same_results(scannet_instance_eval(gt_ids, back, min_region_size=20),
                        scannet_instance_eval(gt_ids, preds, min_region_size=20))


def test_submission_rejects_bad_names_and_predictions(tmp_path):
    _, pred = good_scene()
    with pytest.raises(ValueError, match='plain file names'):
        write_scannet_submission(str(tmp_path), ['scene 0'], [pred])
    with pytest.raises(ValueError, match='scene scene0000_00: scores must be finite'):
        write_scannet_submission(str(tmp_path), ['scene0000_00'],
                                 [dict(pred, scores=np.array([np.inf]))])
    assert not (tmp_path / 'scene0000_00.txt').exists()
