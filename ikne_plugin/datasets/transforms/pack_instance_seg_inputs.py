"""Pack a scene into the model's input: point features and a ``Det3DDataSample``."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.structures import InstanceData

from .point_columns import (COLOR_HALF_RANGE, NORMALS, NUM_WITH_NORMALS, RGB, XYZ,
                            points_array)

BENCHMARK_LABEL_FACTOR = 1000  # ScanNet benchmark ids: nyu40_id * 1000 + instance_id


def instances_from_masks(semantic, instance, seg_valid_class_ids, valid_class_ids):
    """Dense instances of the instance classes, as the ScanNet benchmark defines them.

    A benchmark instance is a distinct ``nyu40_id * 1000 + instance_id`` over points of
    the evaluated classes with an annotated instance; so is ours.

    Args:
        semantic: int [N] class index into ``seg_valid_class_ids`` (len = ignore).
        instance: int [N] raw instance id (aggregation objectId + 1, 0 = none).

    Returns:
        (point_instance [N] dense 0..K-1 or -1, labels [K] index into ``valid_class_ids``,
        gt_ids [N] benchmark ids or 0).
    """
    nyu40_of_class = np.append(np.asarray(seg_valid_class_ids, np.int64), 0)
    if semantic.size and (semantic.min() < 0 or semantic.max() >= len(nyu40_of_class)):
        raise ValueError(f'pts_semantic_mask must hold class indices 0..{len(nyu40_of_class) - 1}'
                         f' (got {semantic.min()}..{semantic.max()}); map NYU40 ids with '
                         'PointSegClassMapping before packing')
    nyu40 = nyu40_of_class[semantic]
    valid_class_ids = np.asarray(valid_class_ids, np.int64)
    instance_class_of_nyu40 = np.full(max(nyu40_of_class.max(), valid_class_ids.max()) + 1, -1)
    instance_class_of_nyu40[valid_class_ids] = np.arange(len(valid_class_ids))
    instance_class = instance_class_of_nyu40[nyu40]
    valid = (instance_class >= 0) & (instance > 0)
    gt_ids = np.where(valid, nyu40 * BENCHMARK_LABEL_FACTOR + instance, 0)
    keys, dense = np.unique(gt_ids[valid], return_inverse=True)
    point_instance = np.full(len(semantic), -1, np.int64)
    point_instance[valid] = dense
    labels = instance_class_of_nyu40[keys // BENCHMARK_LABEL_FACTOR]
    return point_instance, labels, gt_ids


@TRANSFORMS.register_module()
class PackInstanceSegInputs(BaseTransform):
    """Build ``dict(inputs=dict(points=...), data_samples=Det3DDataSample)`` for a scene.

    ``inputs['points']`` float32 [N, 6] (x, y, z, rgb / 127.5 - 1), [N, 9] with normals.
    ``gt_pts_seg.sp_pts_mask`` is the dense superpoint index; with annotations (after
    ``PointSegClassMapping``) also ``gt_pts_seg.pts_semantic_mask`` (0..19, 20 = ignore),
    ``gt_pts_seg.pts_instance_mask`` (dense 0..K-1, -1 elsewhere) and ``gt_instances_3d``
    with ``labels_3d`` [K], ``sp_masks`` bool [K, S] (mean of the point mask over the
    superpoint > 0.5) and ``centers`` [K, 3] (mean xyz of the instance's points). If the
    pipeline carries ``eval_ann_info`` (val), it is passed on with ``gt_ids``, the
    benchmark's ``nyu40_id * 1000 + instance_id`` per point. Class ids come from the
    dataset's ``seg_valid_class_ids`` and ``valid_class_ids`` in the results.

    Args:
        with_normals (bool): append nx, ny, nz (needs points loaded with 9 dims).
        meta_keys (sequence[str]): result keys copied into the data sample's metainfo.
    """

    def __init__(self, with_normals=False, meta_keys=('sample_idx', 'scene_name', 'lidar_path')):
        self.with_normals = with_normals
        self.meta_keys = tuple(meta_keys)

    def transform(self, results):
        points = points_array(results['points'])
        if self.with_normals and points.shape[1] < NUM_WITH_NORMALS:
            raise ValueError(f'with_normals=True needs points with normals ({NUM_WITH_NORMALS} '
                             f'dims, LoadPointsFromFile(use_dim=9)); got {points.shape[1]} dims')
        features = [points[:, XYZ], points[:, RGB] / COLOR_HALF_RANGE - 1]
        if self.with_normals:
            features.append(points[:, NORMALS])
        inputs = dict(points=torch.from_numpy(np.concatenate(features, 1).astype(np.float32)))

        if 'sp_pts_mask' not in results:
            raise KeyError('PackInstanceSegInputs needs sp_pts_mask: put LoadSuperPointsFromFile '
                           'in the pipeline')
        _, superpoint = np.unique(results['sp_pts_mask'], return_inverse=True)
        superpoint = superpoint.reshape(-1)
        num_superpoints = int(superpoint.max()) + 1 if superpoint.size else 0
        data_sample = Det3DDataSample()
        gt_pts_seg = PointData(sp_pts_mask=torch.from_numpy(superpoint))

        if 'pts_semantic_mask' in results and 'pts_instance_mask' in results:
            semantic = np.asarray(results['pts_semantic_mask'], np.int64)
            point_instance, labels, gt_ids = instances_from_masks(
                semantic, np.asarray(results['pts_instance_mask'], np.int64),
                results['seg_valid_class_ids'], results['valid_class_ids'])
            gt_pts_seg.pts_semantic_mask = torch.from_numpy(semantic)
            gt_pts_seg.pts_instance_mask = torch.from_numpy(point_instance)
            data_sample.gt_instances_3d = self.instance_targets(
                points[:, XYZ], superpoint, num_superpoints, point_instance, len(labels), labels)
            if 'eval_ann_info' in results:
                data_sample.eval_ann_info = dict(results['eval_ann_info'], gt_ids=gt_ids)
        data_sample.gt_pts_seg = gt_pts_seg
        data_sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=data_sample)

    @staticmethod
    def instance_targets(xyz, superpoint, num_superpoints, point_instance, num_instances, labels):
        """``InstanceData`` with labels_3d [K], sp_masks bool [K, S] and centers [K, 3]."""
        valid = point_instance >= 0
        instance, sp = point_instance[valid], superpoint[valid]
        inside = np.bincount(instance * num_superpoints + sp,
                             minlength=num_instances * num_superpoints)
        sp_size = np.bincount(superpoint, minlength=num_superpoints)
        sp_masks = inside.reshape(num_instances, num_superpoints) / np.maximum(sp_size, 1) > 0.5
        count = np.maximum(np.bincount(instance, minlength=num_instances), 1)
        centers = np.stack([np.bincount(instance, xyz[valid, a].astype(np.float64), num_instances)
                            for a in range(3)], 1) / count[:, None]
        return InstanceData(labels_3d=torch.from_numpy(labels.astype(np.int64)),
                            sp_masks=torch.from_numpy(sp_masks),
                            centers=torch.from_numpy(centers.astype(np.float32)))
