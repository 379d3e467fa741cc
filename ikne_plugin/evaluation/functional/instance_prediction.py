"""Validation of one scene's instance prediction (the dict the evaluation takes)."""
import numpy as np


def check_instance_prediction(pred, scene, num_points=None):
    """``pred``'s ``masks``, ``labels``, ``scores`` as (bool [K, N], int64 [K], float64 [K]).

    ``pred`` is a dict with ``masks`` (bool or 0/1 ints [K, N], N = ``num_points`` when
    given), ``labels`` (integer NYU40 ids [K]) and ``scores`` (finite numbers [K]).
    Raises ValueError naming ``scene`` (an index or a name) and the problem.
    """
    missing = [key for key in ('masks', 'labels', 'scores') if key not in pred]
    if missing:
        raise ValueError(f'scene {scene}: the prediction lacks {missing}')
    masks, labels, scores = (np.asarray(pred[k]) for k in ('masks', 'labels', 'scores'))
    if masks.ndim != 2 or (num_points is not None and masks.shape[1] != num_points):
        expected = 'N' if num_points is None else num_points
        raise ValueError(f'scene {scene}: masks must have shape [K, {expected}] (one '
                         f'column per point of the scene), got {masks.shape}')
    if masks.dtype != bool and not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f'scene {scene}: masks must be bool or 0/1 ints, got {masks.dtype}')
    num_masks = len(masks)
    if labels.shape != (num_masks,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'scene {scene}: labels must be {num_masks} integer NYU40 ids '
                         f'(one per mask), got shape {labels.shape} dtype {labels.dtype}')
    if scores.shape != (num_masks,) or not (np.issubdtype(scores.dtype, np.integer)
                                            or np.issubdtype(scores.dtype, np.floating)):
        raise ValueError(f'scene {scene}: scores must be {num_masks} real numbers (one per '
                         f'mask), got shape {scores.shape} dtype {scores.dtype}')
    if not np.isfinite(scores).all():
        raise ValueError(f'scene {scene}: scores must be finite, found NaN or inf')
    if masks.dtype != bool:
        masks = masks != 0  # non-zero = in the instance, as in the benchmark's mask files
    return masks, labels.astype(np.int64), scores.astype(np.float64)
