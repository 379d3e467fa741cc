"""The official ScanNet instance AP as an mmengine metric (mmdet3d's METRICS registry)."""
import numpy as np
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric

from ..functional import (SCANNET_INSTANCE_CLASS_IDS, scannet_instance_eval,
                          write_scannet_submission)


@METRICS.register_module()
class ScanNetInstanceMetric(BaseMetric):
    """ScanNet v2 instance-segmentation AP (``all_ap``, ``all_ap_50%``, ``all_ap_25%``
    and per class ``<name>_ap``, ``<name>_ap50%``, ``<name>_ap25%``).

    Per scene it takes ``pred_pts_seg`` (``pts_instance_mask`` bool [K, N],
    ``instance_labels`` class indices [K], ``instance_scores`` [K]) and
    ``eval_ann_info['gt_ids']`` (benchmark encoding, [N]). Class indices become NYU40 ids
    through ``dataset_meta['valid_class_ids']`` (default: the 18 ScanNet ids). Those ids
    keep ScanNet's names in the keys ('showercurtrain'); other ids take the names of
    ``dataset_meta['classes']`` when it has one per id.

    Args:
        submission_prefix (str, optional): also write the benchmark submission files
            there (scene names from the metainfo ``scene_name`` or ``sample_idx``).
        format_only (bool): only write the submission (e.g. for the test split, which
            has no GT); needs ``submission_prefix``; returns no metrics.
        collect_device, prefix: as in ``mmengine.evaluator.BaseMetric``.
    """

    def __init__(self, submission_prefix=None, format_only=False, collect_device='cpu',
                 prefix=None, **kwargs):
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        if format_only and submission_prefix is None:
            raise ValueError('format_only=True needs a submission_prefix to write to')
        self.submission_prefix = submission_prefix
        self.format_only = format_only

    def process(self, data_batch, data_samples):
        """Keep each scene's prediction and GT ids as compact CPU numpy arrays."""
        for sample in data_samples:
            sample = _as_dict(sample)
            pred = _as_dict(sample['pred_pts_seg'])
            result = dict(masks=_to_numpy(pred['pts_instance_mask']),
                          labels=_to_numpy(pred['instance_labels']),
                          scores=_to_numpy(pred['instance_scores']),
                          scene_name=sample.get('scene_name', sample.get('sample_idx')))
            if result['masks'].dtype != bool:
                raise ValueError(f'scene {result["scene_name"]}: pred_pts_seg.pts_instance_'
                                 f'mask must be a bool [K, N] tensor, got '
                                 f'{result["masks"].dtype}')
            if not self.format_only:
                if 'gt_ids' not in (sample.get('eval_ann_info') or {}):
                    raise KeyError(f'scene {result["scene_name"]}: ScanNetInstanceMetric '
                                   f"needs data_sample['eval_ann_info']['gt_ids'] (packed "
                                   f'by the val/test pipeline)')
                result['gt_ids'] = _to_numpy(sample['eval_ann_info']['gt_ids'])
            self.results.append(result)

    def compute_metrics(self, results):
        """Official AP of all processed scenes; logs the per-class table."""
        meta = self.dataset_meta or {}
        class_ids = np.asarray(meta.get('valid_class_ids', SCANNET_INSTANCE_CLASS_IDS))
        # The default ids keep ScanNet's names (stable keys); other ids take the dataset's.
        custom_ids = tuple(class_ids.tolist()) != SCANNET_INSTANCE_CLASS_IDS
        class_names = meta.get('classes') if custom_ids else None
        if class_names is not None and len(class_names) != len(class_ids):
            class_names = None  # e.g. the 20 semantic classes: 'nyu40_<id>' names
        preds = [dict(masks=r['masks'], labels=_nyu40_ids(r, class_ids), scores=r['scores'])
                 for r in results]
        if self.submission_prefix is not None:
            write_scannet_submission(self.submission_prefix,
                                     [_scene_file_name(r) for r in results], preds)
        if self.format_only:
            return {}
        return scannet_instance_eval([r['gt_ids'] for r in results], preds,
                                     valid_class_ids=class_ids, class_names=class_names,
                                     logger='current')


def _as_dict(item):
    """A data sample or data element as a plain dict (the Runner already passes dicts)."""
    return item.to_dict() if hasattr(item, 'to_dict') else item


def _to_numpy(value):
    """A (possibly GPU) tensor or array-like as a numpy array."""
    return value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)


def _nyu40_ids(result, class_ids):
    """The scene's class indices 0..C-1 as NYU40 ids."""
    labels = result['labels']
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'scene {result["scene_name"]}: instance_labels must be integer '
                         f'class indices, got {labels.dtype}')
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_ids)):
        raise ValueError(f'scene {result["scene_name"]}: instance_labels must be class '
                         f'indices in [0, {len(class_ids)}), got {labels.min()}..'
                         f'{labels.max()}')
    return class_ids[labels]


def _scene_file_name(result):
    name = result['scene_name']
    if not isinstance(name, str):
        raise ValueError(f'writing a submission needs scene names (metainfo scene_name or '
                         f'a str sample_idx), got {name!r}')
    return name
