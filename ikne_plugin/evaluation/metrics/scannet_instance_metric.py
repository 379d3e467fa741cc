"""The official ScanNet instance AP as an mmengine metric (mmdet3d's METRICS registry)."""
import numpy as np
from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric

from ..functional import (SCANNET_INSTANCE_CLASS_IDS, scannet_instance_ap,
                          scannet_scene_matches, write_scannet_submission)


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
        """Reduce each scene at once to its share of the PR curves (and its submission
        files), so memory does not grow with the scenes' masks."""
        class_ids, _ = self._classes()
        for sample in data_samples:
            sample = _as_dict(sample)
            pred = _as_dict(sample['pred_pts_seg'])
            name = sample.get('scene_name', sample.get('sample_idx'))
            masks = _to_numpy(pred['pts_instance_mask'])
            if masks.dtype != bool:
                raise ValueError(f'scene {name}: pred_pts_seg.pts_instance_mask must be a '
                                 f'bool [K, N] tensor, got {masks.dtype}')
            pred = dict(masks=masks,
                        labels=_nyu40_ids(name, _to_numpy(pred['instance_labels']), class_ids),
                        scores=_to_numpy(pred['instance_scores']))
            if self.format_only:
                self.results.append(name)
            else:
                if 'gt_ids' not in (sample.get('eval_ann_info') or {}):
                    raise KeyError(f'scene {name}: ScanNetInstanceMetric needs '
                                   f"data_sample['eval_ann_info']['gt_ids'] (packed by the "
                                   f'val/test pipeline)')
                self.results.append(scannet_scene_matches(
                    _to_numpy(sample['eval_ann_info']['gt_ids']), pred, class_ids, scene=name))
            if self.submission_prefix is not None:
                write_scannet_submission(self.submission_prefix, [_scene_file_name(name)],
                                         [pred])

    def compute_metrics(self, results):
        """Official AP of all processed scenes; logs the per-class table."""
        if self.format_only:
            return {}
        class_ids, class_names = self._classes()
        return scannet_instance_ap(results, class_ids, class_names, logger='current')

    def _classes(self):
        """The evaluated NYU40 ids (``dataset_meta['valid_class_ids']``, default ScanNet's
        18) and their names: ScanNet's for the default ids (stable keys), else the
        dataset's ``classes`` when there is one per id."""
        meta = self.dataset_meta or {}
        class_ids = np.asarray(meta.get('valid_class_ids', SCANNET_INSTANCE_CLASS_IDS))
        if tuple(class_ids.tolist()) == SCANNET_INSTANCE_CLASS_IDS:
            return class_ids, None
        class_names = meta.get('classes')
        if class_names is not None and len(class_names) != len(class_ids):
            class_names = None  # e.g. the 20 semantic classes: 'nyu40_<id>' names
        return class_ids, class_names


def _as_dict(item):
    """A data sample or data element as a plain dict (the Runner already passes dicts)."""
    return item.to_dict() if hasattr(item, 'to_dict') else item


def _to_numpy(value):
    """A (possibly GPU) tensor or array-like as a numpy array."""
    return value.detach().cpu().numpy() if hasattr(value, 'detach') else np.asarray(value)


def _nyu40_ids(scene, labels, class_ids):
    """The scene's class indices 0..C-1 as NYU40 ids."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'scene {scene}: instance_labels must be integer class indices, '
                         f'got {labels.dtype}')
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_ids)):
        raise ValueError(f'scene {scene}: instance_labels must be class indices in '
                         f'[0, {len(class_ids)}), got {labels.min()}..{labels.max()}')
    return class_ids[labels]


def _scene_file_name(name):
    if not isinstance(name, str):
        raise ValueError(f'writing a submission needs scene names (metainfo scene_name or '
                         f'a str sample_idx), got {name!r}')
    return name
