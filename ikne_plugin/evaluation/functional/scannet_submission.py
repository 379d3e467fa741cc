"""Writer of the ScanNet benchmark's instance-segmentation submission format.

The format is the one ``evaluate_semantic_instance.py`` reads (ScanNet's BenchmarkScripts):
per scene ``<scene>.txt`` with one line per instance ``<mask path> <nyu40 id> <confidence>``,
the path relative and inside a subfolder, each mask file one integer per mesh vertex
(non-zero = in the instance), file names without spaces.
"""
import os

import numpy as np

from ...utils import atomic_write
from .instance_prediction import check_instance_prediction

MASK_FOLDER = 'predicted_masks'


def write_scannet_submission(out_dir, scene_names, preds):
    """Write ``preds`` (dicts of ``masks`` [K, N], NYU40 ``labels`` [K], ``scores`` [K],
    one per scene) as a benchmark submission in ``out_dir``.

    Every file is written under a temporary name and renamed, masks before their scene's
    index file, so an interrupted run never leaves a truncated or dangling file.
    """
    if len(scene_names) != len(preds):
        raise ValueError(f'{len(scene_names)} scene names but {len(preds)} predictions')
    for name in scene_names:
        if (not isinstance(name, str) or not name or name in ('.', '..')
                or any(c.isspace() or c in '/\\' for c in name)):
            raise ValueError(f'scene names must be plain file names without spaces, '
                             f'got {name!r}')
    os.makedirs(os.path.join(out_dir, MASK_FOLDER), exist_ok=True)
    for name, pred in zip(scene_names, preds):
        masks, labels, scores = check_instance_prediction(pred, name)
        lines = []
        for k, (mask, label, score) in enumerate(zip(masks, labels, scores)):
            mask_path = f'{MASK_FOLDER}/{name}_{k:03d}.txt'
            atomic_write(os.path.join(out_dir, mask_path), _mask_text(mask), mode='wb', fsync=False)
            lines.append(f'{mask_path} {label} {score:.4f}\n')
        atomic_write(os.path.join(out_dir, f'{name}.txt'), ''.join(lines), fsync=False)


def _mask_text(mask):
    """'0\\n' / '1\\n' per point, built as bytes in one go."""
    text = np.empty((len(mask), 2), np.uint8)
    text[:, 0] = mask + ord('0')
    text[:, 1] = ord('\n')
    return text.tobytes()

