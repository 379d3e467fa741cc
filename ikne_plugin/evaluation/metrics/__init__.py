"""Metrics registered in mmdet3d's METRICS registry."""
from .scannet_instance_metric import ScanNetInstanceMetric

__all__ = ['ScanNetInstanceMetric']
