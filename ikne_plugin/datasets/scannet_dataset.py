"""ScanNet v2 instance segmentation dataset over the converter's info files.

The pipelines that go with it (training augmentation, the un-augmented val/test pipeline)
are in ``configs/_base_/datasets/scannet_instance.py``. The test split has no labels: its
pipeline is ``LoadPointsFromFile``, ``LoadSuperPointsFromFile``, ``PackInstanceSegInputs``.
"""
import os

from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.registry import DefaultScope

from .label_map import (CLASSES, SEG_CLASSES, SEG_VALID_CLASS_IDS, VALID_CLASS_IDS,
                        seg_label_mapping)
from .scene_checks import DEFAULT_MAX_POINTS, check_points_file


@DATASETS.register_module()
class IKNEScanNetDataset(BaseDataset):
    """Scenes listed in a ``scannet_infos_<split>.pkl`` of ``tools/create_data.py``.

    Built on mmengine's ``BaseDataset`` rather than mmdet3d's ``Det3DDataset``: the latter
    is organised around 3D boxes (``instances`` with ``bbox_3d``, box modes, empty-GT
    filtering on box labels), none of which exists here; ``BaseDataset`` gives the info
    loading, serialisation and pipeline, and the rest is a path join.

    Each sample dict carries the absolute file paths (``lidar_points.lidar_path``,
    ``pts_semantic_mask_path``, ``pts_instance_mask_path``, ``super_pts_path``),
    ``scene_name``, ``lidar_path``, ``seg_label_mapping`` (NYU40 id -> semantic class index,
    20 = ignore, for ``PointSegClassMapping``), ``seg_valid_class_ids`` and
    ``valid_class_ids`` (for ``PackInstanceSegInputs``), and in ``test_mode`` with labels an
    empty ``eval_ann_info`` that the loading transforms fill. ``sample_idx`` is the
    integer index (mmengine's convention); the scene name is ``scene_name``.

    Every file the infos name must exist: a missing one is reported with its path when
    the dataset is built. Each scene's points file is checked when the scene is loaded
    (``check_points_file``): an empty or truncated file, NaN or infinite coordinates, or
    more than ``max_points`` points is refused with the file's name, before the pipeline.

    Args:
        data_root (str): the converter's output folder.
        ann_file (str): info file, relative to ``data_root`` or absolute.
        data_prefix (dict): sub-folders of the per-scene files (mmdet3d's convention).
        pipeline (list): transforms.
        test_mode (bool): True for val/test (adds ``eval_ann_info`` where labels exist).
        max_points (int): refuse scenes with more points (memory).
    """
    METAINFO = dict(classes=CLASSES, valid_class_ids=VALID_CLASS_IDS,
                    seg_classes=SEG_CLASSES, seg_valid_class_ids=SEG_VALID_CLASS_IDS)

    def __init__(self, data_root, ann_file, data_prefix=dict(
            pts='points', pts_instance_mask='instance_mask', pts_semantic_mask='semantic_mask',
            sp_pts_mask='super_points'), pipeline=(), test_mode=False,
            max_points=DEFAULT_MAX_POINTS, **kwargs):
        self.seg_label_mapping = seg_label_mapping()
        self.max_points = max_points
        # the pipeline's transforms live in mmdet3d's registry: find them there even when
        # the dataset is built outside an mmdet3d-scoped Runner
        with DefaultScope.overwrite_default_scope('mmdet3d'):
            super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                             pipeline=list(pipeline), test_mode=test_mode, **kwargs)

    def load_data_list(self):
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(f'info file not found: {self.ann_file} (make it with '
                                    'tools/create_data.py)')
        data_list = super().load_data_list()
        missing = [path for info in data_list for path in self._file_paths(info)
                   if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f'{len(missing)} data files listed in {self.ann_file} are '
                                    f'missing, e.g. {missing[:3]}')
        return data_list

    def prepare_data(self, idx):
        """Check the scene's points file, then run the pipeline."""
        info = self.get_data_info(idx)
        check_points_file(info['lidar_points']['lidar_path'],
                          info['lidar_points']['num_pts_feats'], self.max_points,
                          info.get('num_points'))
        return super().prepare_data(idx)

    def parse_data_info(self, info):
        info = dict(info)
        info['scene_name'] = info['sample_idx']
        lidar_points = dict(info['lidar_points'])
        lidar_points['lidar_path'] = os.path.join(self.data_prefix['pts'],
                                                  lidar_points['lidar_path'])
        info['lidar_points'] = lidar_points
        info['lidar_path'] = lidar_points['lidar_path']
        info['super_pts_path'] = os.path.join(self.data_prefix['sp_pts_mask'],
                                              info['super_pts_path'])
        has_labels = 'pts_semantic_mask_path' in info
        if has_labels:
            for key in ('pts_semantic_mask', 'pts_instance_mask'):
                info[key + '_path'] = os.path.join(self.data_prefix[key], info[key + '_path'])
            if self.test_mode:
                info['eval_ann_info'] = dict()
        info['seg_label_mapping'] = self.seg_label_mapping
        info['seg_valid_class_ids'] = self._metainfo['seg_valid_class_ids']
        info['valid_class_ids'] = self._metainfo['valid_class_ids']
        return info

    @staticmethod
    def _file_paths(info):
        keys = ('super_pts_path', 'pts_semantic_mask_path', 'pts_instance_mask_path')
        return [info['lidar_points']['lidar_path']] + [info[k] for k in keys if k in info]
