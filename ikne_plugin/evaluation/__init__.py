"""Evaluation: the official ScanNet instance AP and the registered metric."""
from .functional import scannet_instance_eval, write_scannet_submission
from .metrics import ScanNetInstanceMetric

__all__ = ['scannet_instance_eval', 'write_scannet_submission', 'ScanNetInstanceMetric']
