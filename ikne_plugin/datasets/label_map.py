"""ScanNet v2 classes and the raw-category -> NYU40 label map (``scannetv2-labels.combined.tsv``).

The 20 semantic classes and 18 instance classes are the ScanNet benchmark's
(``BenchmarkScripts/util_3d`` / ``evaluate_semantic_instance.py``: VALID_CLASS_IDS),
see DESIGN.md section 4.
"""
import csv

import numpy as np

from ..utils import atomic_write

SEG_CLASSES = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window',
               'bookshelf', 'picture', 'counter', 'desk', 'curtain', 'refrigerator',
               'shower curtain', 'toilet', 'sink', 'bathtub', 'otherfurniture')
SEG_VALID_CLASS_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
# Instance classes: the semantic classes without wall and floor, in the same order.
CLASSES = SEG_CLASSES[2:]
VALID_CLASS_IDS = SEG_VALID_CLASS_IDS[2:]
NUM_NYU40_IDS = 40  # NYU40 ids are 1..40; 0 means unannotated

LABEL_MAP_FILE = 'scannetv2-labels.combined.tsv'
# Column order of ScanNet's label map file (its header line).
LABEL_MAP_COLUMNS = ('id', 'raw_category', 'category', 'count', 'nyu40id', 'eigen13id',
                     'nyuClass', 'nyu40class', 'eigen13class', 'ModelNet40', 'ModelNet10',
                     'ShapeNetCore55', 'synsetoffset', 'wnsynsetid', 'wnsynsetkey', 'mpcat40',
                     'mpcat40index')


def seg_label_mapping():
    """int64 [41]: NYU40 id -> semantic class index 0..19, 20 (ignore) for the other ids.

    The lookup table ``PointSegClassMapping`` reads from ``results['seg_label_mapping']``.
    """
    mapping = np.full(NUM_NYU40_IDS + 1, len(SEG_VALID_CLASS_IDS), np.int64)
    mapping[list(SEG_VALID_CLASS_IDS)] = np.arange(len(SEG_VALID_CLASS_IDS))
    return mapping


class LabelMapError(ValueError):
    """A label map file that cannot be read; the message names the file."""


def read_label_map(path):
    """Return ``{raw_category: nyu40_id}`` from a ScanNet label map TSV (columns by header name)."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    if not rows or not {'raw_category', 'nyu40id'} <= set(rows[0]):
        raise LabelMapError(f'{path}: expected a TSV with columns raw_category and nyu40id')
    label_map = {}
    for line, row in enumerate(rows, start=2):
        try:
            nyu40_id = int(row['nyu40id'])
        except (TypeError, ValueError):
            raise LabelMapError(f'{path}:{line}: nyu40id {row["nyu40id"]!r} is not an integer')
        if not 1 <= nyu40_id <= NUM_NYU40_IDS:
            raise LabelMapError(f'{path}:{line}: nyu40id {nyu40_id} outside 1..{NUM_NYU40_IDS}')
        label_map[row['raw_category']] = nyu40_id
    return label_map


def write_label_map(path, entries):
    """Write a label map TSV in ScanNet's column layout from ``(raw_category, nyu40_id,
    nyu40_class)`` entries (columns ScanNet fills from other taxonomies stay empty)."""
    lines = ['\t'.join(LABEL_MAP_COLUMNS)]
    for index, (raw_category, nyu40_id, nyu40_class) in enumerate(entries, start=1):
        row = dict(id=index, raw_category=raw_category, category=raw_category, count=1,
                   nyu40id=nyu40_id, nyu40class=nyu40_class)
        lines.append('\t'.join(str(row.get(column, '')) for column in LABEL_MAP_COLUMNS))
    atomic_write(path, '\n'.join(lines) + '\n')
