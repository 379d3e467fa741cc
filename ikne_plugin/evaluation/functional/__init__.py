"""Framework-free evaluation functions (numpy only)."""
from .scannet_instance_eval import (IOU_THRESHOLDS, SCANNET_INSTANCE_CLASS_IDS,
                                    SCANNET_INSTANCE_CLASS_NAMES,
                                    format_scannet_instance_table, scannet_instance_ap,
                                    scannet_instance_eval, scannet_scene_matches)
from .scannet_submission import write_scannet_submission

__all__ = [
    'IOU_THRESHOLDS', 'SCANNET_INSTANCE_CLASS_IDS', 'SCANNET_INSTANCE_CLASS_NAMES',
    'format_scannet_instance_table', 'scannet_instance_ap', 'scannet_instance_eval',
    'scannet_scene_matches', 'write_scannet_submission'
]
