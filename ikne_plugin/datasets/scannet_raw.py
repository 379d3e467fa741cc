"""Readers of one raw ScanNet v2 scene: mesh, superpoint segments, object aggregation.

File names follow ScanNet's release: ``<scene>_vh_clean_2.ply``,
``<scene>_vh_clean_2.0.010000.segs.json`` and ``<scene>.aggregation.json``.
Every reader raises :class:`ScanNetFormatError` naming the file it could not use.
"""
import json
import os

import numpy as np

from ..utils import UserInputError
from .ply import PlyFormatError, read_ply
from .scene_checks import check_points

MESH_SUFFIX = '_vh_clean_2.ply'
LABELS_MESH_SUFFIX = '_vh_clean_2.labels.ply'
SEGS_SUFFIX = '_vh_clean_2.0.010000.segs.json'
AGGREGATION_SUFFIX = '.aggregation.json'


class ScanNetFormatError(UserInputError):
    """A raw ScanNet file with missing, malformed or inconsistent content."""


def scene_file(scene_dir, scene, suffix):
    """Path of ``<scene><suffix>`` in ``scene_dir``."""
    return os.path.join(scene_dir, scene + suffix)


def read_mesh(path):
    """Return ``(xyz float32 [V,3], rgb uint8 [V,3], faces int64 [F,3])`` of a ScanNet mesh."""
    try:
        vertex, faces = read_ply(path)
    except FileNotFoundError:
        raise ScanNetFormatError(f'{path}: file not found')
    except PlyFormatError as error:
        raise ScanNetFormatError(str(error))
    names = vertex.dtype.names
    missing = [n for n in ('x', 'y', 'z', 'red', 'green', 'blue') if n not in names]
    if missing:
        raise ScanNetFormatError(f'{path}: vertex properties {missing} missing')
    xyz = np.stack([vertex['x'], vertex['y'], vertex['z']], axis=1).astype(np.float32)
    check_points(xyz, path)
    rgb = np.stack([vertex['red'], vertex['green'], vertex['blue']], axis=1).astype(np.uint8)
    return xyz, rgb, faces


def read_segs(path, num_vertices):
    """Return the ``segIndices`` of a segs file as int64 [V] (one segment id per vertex)."""
    data = _read_json(path)
    seg_indices = data.get('segIndices') if isinstance(data, dict) else None
    if not isinstance(seg_indices, list):
        raise ScanNetFormatError(f'{path}: expected a JSON object with a "segIndices" list')
    try:
        seg_indices = np.asarray(seg_indices, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ScanNetFormatError(f'{path}: "segIndices" must be a list of integers')
    if seg_indices.shape != (num_vertices,):
        raise ScanNetFormatError(f'{path}: {seg_indices.size} segIndices for a mesh of '
                                 f'{num_vertices} vertices')
    return seg_indices


def read_aggregation(path):
    """Return the objects of an aggregation file as ``[(object_id, label, segments), ...]``.

    A segGroup repeating an earlier one (same label and segments) is dropped: ScanNet's
    scene0217_00 lists all its objects twice (mmdet3d's and ScanNet's export scripts keep
    only the first half), which would otherwise double every instance.
    """
    data = _read_json(path)
    groups = data.get('segGroups') if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ScanNetFormatError(f'{path}: expected a JSON object with a "segGroups" list')
    objects, seen = [], set()
    for group in groups:
        try:
            object_id, label = int(group['objectId']), str(group['label'])
            segments = tuple(int(s) for s in group['segments'])
        except (KeyError, TypeError, ValueError):
            raise ScanNetFormatError(f'{path}: every segGroup needs an integer "objectId", a '
                                     f'"label" and a list of integer "segments"; got '
                                     f'{group!r:.200}')
        if object_id < 0:
            raise ScanNetFormatError(f'{path}: negative objectId {object_id}')
        if (label, segments) in seen:
            continue
        seen.add((label, segments))
        objects.append((object_id, label, segments))
    return objects


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ScanNetFormatError(f'{path}: file not found')
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ScanNetFormatError(f'{path}: invalid JSON ({error})')
