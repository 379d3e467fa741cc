"""The official ScanNet v2 3D instance-segmentation AP, vectorised.

Semantics follow ScanNet's ``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py``
and ``BenchmarkScripts/util_3d.py`` (github.com/ScanNet/ScanNet) exactly; DESIGN.md section 5
states them. This is an independent, vectorised implementation: per scene, AND-popcounts
of the bit-packed masks with the words holding each GT instance's points give all
intersections at once (overlapping masks are fine), and the greedy matching runs for all
thresholds and predictions at once, GT instance by GT instance, as the official order needs.
"""
import warnings

import numpy as np
from mmengine.logging import print_log

from .instance_prediction import check_instance_prediction

# evaluate_semantic_instance.py: VALID_CLASS_IDS and CLASS_LABELS, the 18 instance classes
# (NYU40 ids). The names are spelled as in mmdet3d's ScanNet metainfo ('showercurtrain').
SCANNET_INSTANCE_CLASS_IDS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET_INSTANCE_CLASS_NAMES = (
    'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf', 'picture',
    'counter', 'desk', 'curtain', 'refrigerator', 'showercurtrain', 'toilet', 'sink',
    'bathtub', 'otherfurniture')
# evaluate_semantic_instance.py: opt.overlaps = np.append(np.arange(0.5, 0.95, 0.05), 0.25).
# Built the same way so that the strict `iou > threshold` tests compare identical floats.
IOU_THRESHOLDS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
_AP_COLUMNS = ~np.isclose(IOU_THRESHOLDS, 0.25)  # 0.50..0.90, averaged into AP
_AP50_COLUMN = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0])
_AP25_COLUMN = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.25))[0])


def scannet_instance_eval(gt_ids, preds, valid_class_ids=SCANNET_INSTANCE_CLASS_IDS,
                          class_names=None, min_region_size=100, logger=None):
    """Official ScanNet instance AP of predictions over a set of scenes.

    Args:
        gt_ids (list[np.ndarray]): per scene, one int per point in the benchmark
            encoding ``nyu40_id * 1000 + instance_id`` (0 = no instance).
        preds (list[dict]): per scene, ``masks`` (bool or 0/1 ints [K, N]; masks may
            overlap), ``labels`` (NYU40 ids [K]; ids outside ``valid_class_ids`` are
            dropped, as the official script does) and ``scores`` ([K], finite).
        valid_class_ids (Sequence[int]): the evaluated NYU40 ids (positive).
        class_names (Sequence[str], optional): one name per id; defaults to ScanNet's
            names for the default ids and ``nyu40_<id>`` otherwise.
        min_region_size (int): GT instances and predictions with fewer points do not
            count (official: 100).
        logger (optional): if given, the per-class table is printed to it
            (``mmengine.logging.print_log``; e.g. ``'current'``).

    Returns:
        dict[str, float]: ``all_ap`` (mean over classes and the IoU thresholds
        0.50:0.05:0.90), ``all_ap_50%``, ``all_ap_25%``, and per class ``<name>_ap``,
        ``<name>_ap50%``, ``<name>_ap25%``. A class without GT gives NaN and is left out
        of the means; a class with GT but without predictions gives 0. Where the
        official script would raise an IndexError (GT and predictions of a class exist
        but every prediction is ignored and no GT is matched) the AP is 0.
    """
    if len(gt_ids) != len(preds):
        raise ValueError(f'gt_ids has {len(gt_ids)} scenes but preds has {len(preds)}')
    matches = [scannet_scene_matches(scene_gt_ids, pred, valid_class_ids, min_region_size,
                                     scene=index)
               for index, (scene_gt_ids, pred) in enumerate(zip(gt_ids, preds))]
    return scannet_instance_ap(matches, valid_class_ids, class_names, logger)


def scannet_scene_matches(gt_ids, pred, valid_class_ids=SCANNET_INSTANCE_CLASS_IDS,
                          min_region_size=100, scene=0):
    """One scene's share of the official PR curves, without its masks.

    The official AP pools per-scene matches, so a caller that sees scenes one by one (the
    metric) keeps these small summaries instead of every mask. ``gt_ids``, ``pred``,
    ``valid_class_ids`` and ``min_region_size`` are as in :func:`scannet_instance_eval`;
    ``scene`` (an index or a name) appears in error messages.
    """
    class_ids, _ = _checked_classes(valid_class_ids, None)
    if int(min_region_size) < 1:
        raise ValueError(f'min_region_size must be >= 1, got {min_region_size}')
    return _match_scene(*_checked_scene(scene, gt_ids, pred), class_ids, int(min_region_size))


def scannet_instance_ap(scene_matches, valid_class_ids=SCANNET_INSTANCE_CLASS_IDS,
                        class_names=None, logger=None):
    """The official AP dict (see :func:`scannet_instance_eval`) from the
    :func:`scannet_scene_matches` of every scene, made with the same ``valid_class_ids``."""
    class_ids, names = _checked_classes(valid_class_ids, class_names)
    if len(scene_matches) == 0:
        raise ValueError('no scenes to evaluate: gt_ids and preds are empty')
    has_gt = np.zeros(len(class_ids), bool)
    has_pred = np.zeros(len(class_ids), bool)
    hard_false_negatives = np.zeros((len(class_ids), len(IOU_THRESHOLDS)), np.int64)
    for scene in scene_matches:
        if scene['hard_false_negatives'].shape != hard_false_negatives.shape:
            raise ValueError(f'scene matches made for {len(scene["hard_false_negatives"])} '
                             f'classes, but valid_class_ids has {len(class_ids)}')
        has_gt[scene['gt_classes']] = True
        has_pred[scene['pred_classes']] = True
        hard_false_negatives += scene['hard_false_negatives']
    entries = np.concatenate([scene['entries'] for scene in scene_matches], axis=1)
    results = _summarise(_average_precisions(entries, hard_false_negatives, has_gt, has_pred),
                         names)
    if logger is not None:
        print_log('\n' + format_scannet_instance_table(results, names), logger=logger)
    return results


def format_scannet_instance_table(results, class_names=SCANNET_INSTANCE_CLASS_NAMES):
    """The official script's result table (class, AP, AP_50%, AP_25%) as text."""
    rows = [(name, results[f'{name}_ap'], results[f'{name}_ap50%'],
             results[f'{name}_ap25%']) for name in class_names]
    width = max(15, *(len(name) for name in class_names))
    line = '#' * (width + 48)
    text = [line, f'{"what":<{width}}:{"AP":>15} {"AP_50%":>15} {"AP_25%":>15}', line]
    text += [f'{name:<{width}}:{ap:>15.3f} {ap50:>15.3f} {ap25:>15.3f}'
             for name, ap, ap50, ap25 in rows]
    text += ['-' * (width + 48),
             f'{"average":<{width}}:{results["all_ap"]:>15.3f} '
             f'{results["all_ap_50%"]:>15.3f} {results["all_ap_25%"]:>15.3f}']
    return '\n'.join(text)


def _checked_classes(valid_class_ids, class_names):
    """Validated class ids (int64 array) and names (tuple)."""
    class_ids = np.asarray(valid_class_ids)
    if (class_ids.ndim != 1 or len(class_ids) == 0
            or not np.issubdtype(class_ids.dtype, np.integer)):
        raise ValueError(f'valid_class_ids must be a non-empty 1-D sequence of ints, '
                         f'got {valid_class_ids!r}')
    if class_ids.min() < 1 or len(np.unique(class_ids)) != len(class_ids):
        # id 0 would make "groups" (gt ids < 1000) valid, a case ScanNet never has.
        raise ValueError(f'valid_class_ids must be distinct positive NYU40 ids, '
                         f'got {valid_class_ids!r}')
    if class_names is None:
        if tuple(class_ids.tolist()) == SCANNET_INSTANCE_CLASS_IDS:
            class_names = SCANNET_INSTANCE_CLASS_NAMES
        else:
            class_names = [f'nyu40_{i}' for i in class_ids.tolist()]
    class_names = tuple(class_names)
    if len(class_names) != len(class_ids):
        raise ValueError(f'class_names has {len(class_names)} names but valid_class_ids '
                         f'has {len(class_ids)} ids')
    return class_ids.astype(np.int64), class_names


def _checked_scene(index, gt_ids, pred):
    """Scene ``index``'s arrays as (gt_ids, masks, labels, scores), or a clear error."""
    gt_ids = np.asarray(gt_ids)
    if gt_ids.ndim != 1 or not np.issubdtype(gt_ids.dtype, np.integer):
        raise ValueError(f'scene {index}: gt_ids must be a 1-D integer array, got shape '
                         f'{gt_ids.shape} dtype {gt_ids.dtype}')
    if len(gt_ids) and gt_ids.min() < 0:
        raise ValueError(f'scene {index}: gt_ids must be >= 0 (nyu40_id * 1000 + instance '
                         f'id, 0 = none), found {gt_ids.min()}')
    return (gt_ids.astype(np.int64), *check_instance_prediction(pred, index, len(gt_ids)))


def _class_index(nyu40_ids, class_ids):
    """Index of each NYU40 id in ``class_ids``, -1 where it is not there."""
    order = np.argsort(class_ids)
    position = np.searchsorted(class_ids[order], nyu40_ids).clip(max=len(class_ids) - 1)
    return np.where(class_ids[order][position] == nyu40_ids, order[position], -1)


def _gt_instances(gt_ids, class_ids):
    """GT instances as util_3d.get_instances finds them: the ids whose label (id // 1000)
    is evaluated, in ascending order. Returns each point's instance index (-1 = void),
    each instance's class index and point count."""
    sorted_ids = np.sort(gt_ids)  # np.unique, faster here than numpy 2's hashing one
    first = np.ones(len(sorted_ids), bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    ids = sorted_ids[first]
    point_id = np.searchsorted(ids, gt_ids)
    id_class = _class_index(ids // 1000, class_ids)
    instance_rows = np.flatnonzero(id_class >= 0)
    id_to_instance = np.full(len(ids), -1)
    id_to_instance[instance_rows] = np.arange(len(instance_rows))
    return (id_to_instance[point_id], id_class[instance_rows],
            np.bincount(point_id, minlength=len(ids))[instance_rows])


def _match_scene(gt_ids, masks, labels, scores, class_ids, min_region_size):
    """One scene's share of the PR curves, as ``assign_instances_for_scan`` and the
    scene loop of ``evaluate_matches`` compute it, for all thresholds at once.

    Returns a dict: ``gt_classes`` (classes with a counted GT instance), ``pred_classes``
    (classes with a kept prediction), ``hard_false_negatives`` [C, T] and ``entries``
    [4, E] = (class, threshold index, score, is true positive) of each curve entry.
    """
    thresholds = IOU_THRESHOLDS[:, None]
    point_instance, gt_class, gt_count = _gt_instances(gt_ids, class_ids)

    # Predictions with an evaluated label and at least min_region_size points, bit-packed.
    packed_masks = _pack(masks)
    pred_class = _class_index(labels, class_ids)
    pred_count = np.bitwise_count(packed_masks).sum(axis=1, dtype=np.int64)
    keep = (pred_class >= 0) & (pred_count >= min_region_size)
    packed_masks, pred_class, pred_count, scores = (
        packed_masks[keep], pred_class[keep], pred_count[keep], scores[keep])

    intersection = _intersections(packed_masks, point_instance, len(gt_class))
    same_class = pred_class[:, None] == gt_class[None]
    iou = np.where(same_class, intersection / (
        pred_count[:, None] + gt_count[None] - intersection), 0.0)
    counted = gt_count >= min_region_size

    # GT-major greedy matching over the counted GT in id order. A prediction above the
    # threshold is the GT's match if not already some GT's match (pred_visited); any
    # further one is a false positive and the GT keeps the highest score, so the entries
    # are all candidates' scores with the best one a true positive.
    hard_false_negatives = np.zeros((len(class_ids), len(IOU_THRESHOLDS)), np.int64)
    visited = np.zeros((len(IOU_THRESHOLDS), len(scores)), bool)
    entries = []
    for gt in np.flatnonzero(counted):
        candidate = (iou[:, gt] > thresholds) & ~visited
        matched = candidate.any(axis=1)
        hard_false_negatives[gt_class[gt]] += ~matched
        if not matched.any():
            continue
        visited[matched, candidate.argmax(axis=1)[matched]] = True  # first in pred order
        best = np.where(candidate, scores, -np.inf).argmax(axis=1)
        threshold, pred = np.nonzero(candidate)
        entries.append(np.stack([np.full(len(pred), gt_class[gt]), threshold,
                                 scores[pred], pred == best[threshold]]))

    # Unmatched predictions: none above the threshold with a same-class GT (small ones
    # included). A false positive unless the share of its points on void or on small
    # same-class GT exceeds the threshold, in which case it is ignored.
    found_gt = iou.max(axis=1, initial=0.0) > thresholds
    void_intersection = pred_count - intersection.sum(axis=1)
    small_intersection = (intersection * (same_class & ~counted)).sum(axis=1)
    ignored = (void_intersection + small_intersection) / pred_count > thresholds
    threshold, pred = np.nonzero(~found_gt & ~ignored)
    entries.append(np.stack([pred_class[pred], threshold, scores[pred],
                             np.zeros(len(pred))]))

    return dict(gt_classes=gt_class[counted], pred_classes=pred_class,
                hard_false_negatives=hard_false_negatives,
                entries=np.concatenate(entries, axis=1))


_POWERS_OF_TWO = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))


def _pack(masks):
    """Rows of a bool matrix as little-endian uint64 words: point p is bit p % 64 of word
    p // 64 (zero padded), for popcounts."""
    packed = np.packbits(masks, axis=1, bitorder='little')
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    return np.ascontiguousarray(packed).view('<u8')


def _intersections(packed_masks, point_instance, num_instances, block_bytes=1 << 25):
    """``out[k, g]`` = number of points in (packed) mask k and in GT instance g.

    GT instances are packed sparsely, as (instance, word, bits) for every word holding
    some of their points, so the work is one AND-popcount per mask and such word (mesh
    vertex order keeps an instance in few words), summed per instance.
    """
    out = np.zeros((len(packed_masks), num_instances), np.int64)
    if len(packed_masks) == 0 or num_instances == 0:
        return out
    num_words = packed_masks.shape[1]
    points = np.flatnonzero(point_instance >= 0)
    instance_bits = np.zeros(num_instances * num_words, np.uint64)
    # Each point sets its own bit, so adding the bits is or-ing them (and faster).
    np.add.at(instance_bits, point_instance[points] * num_words + points // 64,
              _POWERS_OF_TWO[points % 64])
    pairs = np.flatnonzero(instance_bits)  # sorted by instance, then word
    pair_bits, pair_word = instance_bits[pairs], pairs % num_words
    instance_start = np.searchsorted(pairs // num_words, np.arange(num_instances))
    rows = max(1, block_bytes // (8 * len(pairs)))  # bound the temporary [rows, pairs]
    for begin in range(0, len(packed_masks), rows):
        common = np.bitwise_count(packed_masks[begin:begin + rows, pair_word] & pair_bits)
        out[begin:begin + rows] = np.add.reduceat(common, instance_start, axis=1,
                                                  dtype=np.int64)
    return out


def _average_precisions(entries, hard_false_negatives, has_gt, has_pred):
    """AP [C, T] from the pooled curve entries (evaluate_matches' AP step)."""
    num_classes, num_thresholds = hard_false_negatives.shape
    ap = np.full((num_classes, num_thresholds), np.nan)
    ap[has_gt] = 0.0
    entry_class, entry_threshold, entry_score, entry_true = entries
    order = np.lexsort((entry_score, entry_threshold, entry_class))
    group = (entry_class * num_thresholds + entry_threshold)[order].astype(np.int64)
    bounds = np.searchsorted(group, np.arange(num_classes * num_thresholds + 1))
    for cls in np.flatnonzero(has_gt & has_pred):
        for threshold in range(num_thresholds):
            group_id = cls * num_thresholds + threshold
            rows = order[bounds[group_id]:bounds[group_id + 1]]
            ap[cls, threshold] = _curve_ap(entry_score[rows], entry_true[rows],
                                           hard_false_negatives[cls, threshold])
    return ap


def _curve_ap(sorted_scores, sorted_true, hard_false_negatives):
    """Area under one PR curve, entries sorted by ascending score.

    At each distinct score s: precision and recall of the entries scoring >= s, the hard
    false negatives counting in recall's denominator; then the point (recall 0,
    precision 1); AP = sum_i p_i (r_{i-1} - r_{i+1}) / 2 with r_{-1} = r_0 and r beyond
    the end 0 (the official centred step, no precision envelope).
    """
    num = len(sorted_scores)
    if num == 0:
        return 0.0
    first = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    true_below = np.r_[0.0, np.cumsum(sorted_true)][first]
    num_true = sorted_true.sum()
    true_positives = num_true - true_below
    precision = np.r_[true_positives / (num - first), 1.0]
    recall = np.r_[true_positives / (num_true + hard_false_negatives), 0.0]
    step = (np.r_[recall[0], recall[:-1]] - np.r_[recall[1:], 0.0]) / 2
    return float(np.dot(precision, step))


def _summarise(ap, class_names):
    """The result dict of ``compute_averages``, flattened to '<name>_ap' style keys."""
    with warnings.catch_warnings():  # all-NaN slices (no GT at all) give NaN quietly
        warnings.simplefilter('ignore', RuntimeWarning)
        results = {'all_ap': float(np.nanmean(ap[:, _AP_COLUMNS])),
                   'all_ap_50%': float(np.nanmean(ap[:, _AP50_COLUMN])),
                   'all_ap_25%': float(np.nanmean(ap[:, _AP25_COLUMN]))}
    for name, class_ap in zip(class_names, ap):
        results[f'{name}_ap'] = float(np.mean(class_ap[_AP_COLUMNS]))
        results[f'{name}_ap50%'] = float(class_ap[_AP50_COLUMN])
        results[f'{name}_ap25%'] = float(class_ap[_AP25_COLUMN])
    return results
