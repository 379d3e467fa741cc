"""Raw ScanNet v2 scenes -> the processed files the dataset reads (``tools/create_data.py``).

Input (the layout of SPFormer/MAFT's data preparation): ``<root>/{train,val}/`` with
``<scene>_vh_clean_2.ply``, ``<scene>_vh_clean_2.0.010000.segs.json`` and
``<scene>.aggregation.json`` per scene (``labels.ply`` may sit beside them; it is not
needed), ``<root>/test/`` with meshes only, ``<root>/scannetv2-labels.combined.tsv``.

Output in ``<out>``, one row per mesh vertex in mesh order (nothing sampled away, so
evaluation is benchmark-comparable):

- ``points/<scene>.bin`` float32 [N, 9]: x, y, z, r, g, b (0-255), nx, ny, nz;
- ``semantic_mask/<scene>.bin`` int64 [N]: NYU40 id (0 = unannotated);
- ``instance_mask/<scene>.bin`` int64 [N]: aggregation objectId + 1 (0 = none), all objects;
- ``super_points/<scene>.bin`` int64 [N]: segIndices (computed with ``segment_mesh`` for test);
- ``val_gt/<scene>.txt``: benchmark ground truth ``nyu40_id * 1000 + objectId + 1`` for
  the 18 instance classes, 0 elsewhere (one line per vertex);
- ``scannet_infos_<split>.pkl``: ``dict(metainfo=..., data_list=[...])`` (mmengine v2 infos).

Semantic labels come from the aggregation's labels through the label map, as in ScanNet's
``export_train_mesh_for_evaluation.py``; where objects share a segment, the later one wins.
Every file is written under a temporary name and renamed, so an interrupted run leaves
whole files only; a scene counts as done when all of its files exist.
"""
import functools
import glob
import multiprocessing
import os
import pickle
import traceback

import numpy as np
import torch
from tqdm import tqdm

from ..ops import segment_mesh
from ..utils import UserInputError, atomic_write
from .label_map import LABEL_MAP_FILE, VALID_CLASS_IDS, read_label_map
from .scannet_raw import (AGGREGATION_SUFFIX, MESH_SUFFIX, SEGS_SUFFIX, ScanNetFormatError,
                          read_aggregation, read_mesh, read_segs, scene_file)

SPLITS = ('train', 'val', 'test')
LABELLED_SPLITS = ('train', 'val')
POINT_FEATURES = ('x', 'y', 'z', 'r', 'g', 'b', 'nx', 'ny', 'nz')
# Sub-folders of the output; the keys are mmdet3d's ``data_prefix`` names.
DATA_PREFIX = dict(pts='points', pts_semantic_mask='semantic_mask',
                   pts_instance_mask='instance_mask', sp_pts_mask='super_points')
VAL_GT_DIR = 'val_gt'
# ScanNet's official superpoints were made with kThresh 0.01, segMinVerts 20 (segs file name).
SEGMENTATION_PARAMS = dict(k_thresh=0.01, seg_min_verts=20)


def info_file(out_dir, split):
    """Path of the info file of ``split``."""
    return os.path.join(out_dir, f'scannet_infos_{split}.pkl')


def find_scenes(raw_root):
    """Return ``{split: sorted scene names}`` of the meshes under ``<raw_root>/<split>/``."""
    return {split: sorted(os.path.basename(p)[:-len(MESH_SUFFIX)]
                          for p in glob.glob(os.path.join(raw_root, split, '*' + MESH_SUFFIX)))
            for split in SPLITS}


def vertex_normals(xyz, faces):
    """Unit vertex normals: the normalised sum of the area-weighted normals of adjacent faces.

    The cross product of two face edges is the face normal scaled by twice its area, so
    summing raw cross products weighs by area. Vertices without faces get a zero normal.
    """
    p = xyz.astype(np.float64)
    cross = np.cross(p[faces[:, 1]] - p[faces[:, 0]], p[faces[:, 2]] - p[faces[:, 0]])
    corner_vertex = faces.reshape(-1)
    normals = np.stack([np.bincount(corner_vertex, np.repeat(cross[:, a], 3), len(xyz))
                        for a in range(3)], axis=1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-30)).astype(np.float32)


def label_vertices(objects, seg_indices, label_map, agg_path, label_map_path):
    """Per-vertex NYU40 ids and instance ids (objectId + 1) from the aggregation's objects."""
    segments, vertex_segment = np.unique(seg_indices, return_inverse=True)
    segment_label = np.zeros(len(segments), np.int64)
    segment_instance = np.zeros(len(segments), np.int64)
    for object_id, label, object_segments in objects:
        if label not in label_map:
            raise ScanNetFormatError(f'{agg_path}: label {label!r} of object {object_id} is '
                                     f'not in the label map {label_map_path}')
        wanted = np.asarray(object_segments, np.int64)
        position = np.minimum(np.searchsorted(segments, wanted), len(segments) - 1)
        lacking = wanted[segments[position] != wanted]
        if lacking.size:
            raise ScanNetFormatError(f'{agg_path}: object {object_id} ({label!r}) refers to '
                                     f'segment ids {lacking[:5].tolist()} that the segs file '
                                     'lacks')
        segment_label[position] = label_map[label]
        segment_instance[position] = object_id + 1
    return segment_label[vertex_segment], segment_instance[vertex_segment]


def benchmark_gt_ids(semantic, instance):
    """ScanNet benchmark ids ``nyu40_id * 1000 + instance_id`` for the 18 classes, else 0."""
    keep = np.isin(semantic, VALID_CLASS_IDS) & (instance > 0)
    return np.where(keep, semantic * 1000 + instance, 0)


def scene_outputs(out_dir, split, scene):
    """Output paths of a scene, keyed by ``DATA_PREFIX`` names (+ ``val_gt`` for val)."""
    keys = ('pts', 'sp_pts_mask') if split not in LABELLED_SPLITS else tuple(DATA_PREFIX)
    paths = {key: os.path.join(out_dir, DATA_PREFIX[key], scene + '.bin') for key in keys}
    if split == 'val':
        paths['val_gt'] = os.path.join(out_dir, VAL_GT_DIR, scene + '.txt')
    return paths


def scene_info(out_dir, split, scene):
    """The info entry of a converted scene, read back from its files."""
    paths = scene_outputs(out_dir, split, scene)
    superpoints = np.fromfile(paths['sp_pts_mask'], np.int64)
    info = dict(sample_idx=scene,
                lidar_points=dict(num_pts_feats=len(POINT_FEATURES), lidar_path=scene + '.bin'),
                super_pts_path=scene + '.bin',
                num_points=len(superpoints),
                num_superpoints=len(np.unique(superpoints)))
    if split in LABELLED_SPLITS:
        info.update(pts_semantic_mask_path=scene + '.bin', pts_instance_mask_path=scene + '.bin')
    return info


def convert_scene(raw_root, out_dir, split, scene, label_map=None, label_map_path=None,
                  overwrite=False):
    """Convert one scene (unless all its files exist and not ``overwrite``); return its info."""
    paths = scene_outputs(out_dir, split, scene)
    if not overwrite and all(os.path.isfile(p) for p in paths.values()):
        return scene_info(out_dir, split, scene)
    scene_dir = os.path.join(raw_root, split)
    xyz, rgb, faces = read_mesh(scene_file(scene_dir, scene, MESH_SUFFIX))
    if split in LABELLED_SPLITS:
        segs_path = scene_file(scene_dir, scene, SEGS_SUFFIX)
        agg_path = scene_file(scene_dir, scene, AGGREGATION_SUFFIX)
        superpoints = read_segs(segs_path, len(xyz))
        semantic, instance = label_vertices(read_aggregation(agg_path), superpoints, label_map,
                                            agg_path, label_map_path)
    else:
        superpoints = segment_mesh(torch.from_numpy(xyz), torch.from_numpy(faces),
                                   **SEGMENTATION_PARAMS).numpy()
    points = np.concatenate([xyz, rgb.astype(np.float32), vertex_normals(xyz, faces)], axis=1)
    files = dict(pts=points, sp_pts_mask=superpoints)
    if split in LABELLED_SPLITS:
        files.update(pts_semantic_mask=semantic, pts_instance_mask=instance)
    for key, array in files.items():
        dtype = np.float32 if key == 'pts' else np.int64
        atomic_write(paths[key], np.ascontiguousarray(array, dtype).tobytes(), mode='wb')
    if split == 'val':
        gt_ids = benchmark_gt_ids(semantic, instance)
        atomic_write(paths['val_gt'], '\n'.join(map(str, gt_ids.tolist())) + '\n')
    return scene_info(out_dir, split, scene)


def _init_worker():
    """One torch thread per worker: no oversubscription, and a forked worker never enters the
    OpenMP pool its parent may have started (libgomp's pool does not survive a fork)."""
    torch.set_num_threads(1)


def _convert_task(task, **kwargs):
    """Pool worker: ``(split, scene) -> (split, scene, info or None, error message or None)``."""
    split, scene = task
    try:
        return split, scene, convert_scene(split=split, scene=scene, **kwargs), None
    except UserInputError as error:  # a ScanNetFormatError, or a scene check
        return split, scene, None, f'{split}/{scene}: {error}'
    except Exception:  # an unforeseen failure still must not stop the other scenes
        return split, scene, None, f'{split}/{scene}: {traceback.format_exc()}'


def convert_scannet(raw_root, out_dir, workers=1, overwrite=False, progress=True):
    """Convert every scene under ``raw_root`` and write the info files.

    Returns:
        (num_scenes, failures): the number of scenes found and the list of failure messages
        (each names split, scene and file). Infos list the scenes that succeeded.
    """
    scenes = find_scenes(raw_root)
    tasks = [(split, scene) for split in SPLITS for scene in scenes[split]]
    if not tasks:
        raise FileNotFoundError(f'no scenes under {raw_root}: expected '
                                f'{{train,val,test}}/<scene>{MESH_SUFFIX}')
    label_map_path = os.path.join(raw_root, LABEL_MAP_FILE)
    label_map = None
    if any(scenes[split] for split in LABELLED_SPLITS):
        if not os.path.isfile(label_map_path):
            raise FileNotFoundError(f'{label_map_path}: label map not found (ScanNet\'s '
                                    f'{LABEL_MAP_FILE} belongs in the raw root)')
        label_map = read_label_map(label_map_path)
    convert = functools.partial(_convert_task, raw_root=raw_root, out_dir=out_dir,
                                label_map=label_map, label_map_path=label_map_path,
                                overwrite=overwrite)
    bar = functools.partial(tqdm, total=len(tasks), desc='scenes', disable=not progress)
    if workers > 1:
        with multiprocessing.Pool(workers, initializer=_init_worker) as pool:
            results = list(bar(pool.imap_unordered(convert, tasks)))
    else:
        results = list(bar(map(convert, tasks)))

    infos = {split: {} for split in SPLITS}
    failures = []
    for split, scene, info, error in results:
        if error is None:
            infos[split][scene] = info
        else:
            failures.append(error)
    for split in SPLITS:
        if scenes[split]:
            data_list = [infos[split][s] for s in scenes[split] if s in infos[split]]
            metainfo = dict(dataset='ScanNet', info_version='1.1', split=split,
                            point_features=POINT_FEATURES)
            atomic_write(info_file(out_dir, split),
                         pickle.dumps(dict(metainfo=metainfo, data_list=data_list)), mode='wb')
    return len(tasks), sorted(failures)
