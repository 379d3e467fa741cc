"""The IKNE detector: voxelise the points, run the sparse U-Net, pool per superpoint, call the head."""
from collections import OrderedDict

import torch
from mmdet3d.models.detectors import Base3DDetector
from mmdet3d.registry import MODELS
from mmdet3d.structures import PointData

from ikne_plugin.ops import voxel_pool, voxelize
from ikne_plugin.ops.range_flags import raise_flagged


@MODELS.register_module()
class IKNE(Base3DDetector):
    """IKNE ("Insightful Instance Features for 3D Instance Segmentation", CVPR 2025).

    Voxelisation follows MAFT (``maft/dataset/scannet.py`` and its collate function): integer
    voxel = ``(xyz * (1 / voxel_size) - min over the scene).long()`` (truncation), batch index first,
    spatial shape = max + 1 over the batch, at least ``min_spatial_shape`` per axis; voxel
    features = mean of the points' features, which are rgb in [-1, 1] then xyz in metres
    (MAFT's order), then normals with ``with_normals``.

    The head receives per-scene lists in ``x`` (``pts_feats``, ``pts_xyz``, ``sp_ids``,
    ``sp_feats``, ``sp_xyz``) and owns its criterion and post-processing.

    Args:
        backbone: config of the sparse U-Net (``SpConvUNet``).
        head: config of the head (``head.loss``, ``head.predict`` and ``head(x)``).
        voxel_size: voxel edge in metres (MAFT: 0.02, i.e. scale 50).
        pool: superpoint pooling of the point features, 'mean' (MAFT) or 'max'.
        with_normals: append the points' normals (columns 6:9) to the input features.
        min_spatial_shape: lower bound of the sparse grid per axis (MAFT: 128).
        data_preprocessor: config of the data preprocessor (``Det3DDataPreprocessor``).
        init_cfg: mmengine initialisation config.
    """

    def __init__(self, backbone, head, voxel_size=0.02, pool='mean', with_normals=False,
                 min_spatial_shape=128, data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            # mmengine's BaseModel would build it in mmengine's registry, which knows mmdet3d's
            # preprocessors only under a default scope (set by the Runner, not by MODELS.build)
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pool not in ('mean', 'max'):
            raise ValueError(f"IKNE: pool must be 'mean' or 'max', got {pool!r}")
        if voxel_size <= 0:
            raise ValueError(f'IKNE: voxel_size must be positive, got {voxel_size}')
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head)
        self.voxel_scale = 1.0 / voxel_size  # MAFT multiplies by the scale (50), bit for bit
        self.pool = pool
        self.with_normals = with_normals
        self.min_spatial_shape = min_spatial_shape
        in_channels = 9 if with_normals else 6
        if getattr(self.backbone, 'in_channels', in_channels) != in_channels:
            raise ValueError(f'IKNE: with_normals={with_normals} gives {in_channels} input '
                             f'channels, but the backbone expects {self.backbone.in_channels}')

    def extract_feat(self, batch_inputs_dict, batch_data_samples):
        """Per-point and per-superpoint features of every scene, as the head's ``x`` dict."""
        points = batch_inputs_dict['points']
        sp_ids = self._superpoint_ids(points, batch_data_samples)
        device = points[0].device
        num_points = [len(p) for p in points]
        batch_size = len(points)
        # non_blocking: a copy from pageable memory that does not wait for the GPU's queue
        batch_idx = torch.repeat_interleave(
            torch.arange(batch_size, device=device),
            torch.tensor(num_points).to(device, non_blocking=True), output_size=sum(num_points))
        pts = torch.cat(points)
        xyz = pts[:, :3]
        feats = [pts[:, 3:6], xyz] + ([pts[:, 6:9]] if self.with_normals else [])
        voxel_coords, p2v, spatial_shape = self.voxelize_points(xyz, batch_idx, num_points)
        # superpoints: one id space over the batch, offset by the superpoints of earlier scenes;
        # counted before the backbone is queued, so that the host, not waiting for it here,
        # queues the head's work while the GPU runs the backbone
        # (a reduction per scene: a scatter of every point into B slots serialises on atomics)
        all_sp = torch.cat(sp_ids)
        num_sp = torch.stack([ids.max() for ids in sp_ids]) + 1
        sp_offset = torch.cumsum(num_sp, 0) - num_sp
        global_sp = all_sp + sp_offset[batch_idx]
        num_sp = num_sp.tolist()

        voxel_feats = voxel_pool(torch.cat(feats, 1), p2v, len(voxel_coords), 'mean')
        # back to the points' dtype: spconv computes in float16 under CUDA autocast, voxel_pool
        # takes float32/float64 (a no-op without autocast)
        pts_feats = self.backbone(voxel_feats, voxel_coords, spatial_shape,
                                  batch_size).to(voxel_feats.dtype)[p2v]
        sp_feats = voxel_pool(pts_feats, global_sp, sum(num_sp), self.pool)
        sp_xyz = voxel_pool(xyz, global_sp, sum(num_sp), 'mean')
        return dict(
            pts_feats=list(pts_feats.split(num_points)),
            pts_xyz=list(xyz.split(num_points)),
            sp_ids=sp_ids,
            sp_feats=list(sp_feats.split(num_sp)),
            sp_xyz=list(sp_xyz.split(num_sp)))

    def voxelize_points(self, xyz, batch_idx, num_points):
        """MAFT's voxel grid: truncation after subtracting each scene's minimum.

        Args:
            xyz: ``[N, 3]`` point coordinates (metres) of all scenes, scene after scene.
            batch_idx: ``[N]`` int64 scene index of each point.
            num_points: the scenes' point counts (host ints), summing to N.

        Returns:
            ``voxel_coords`` [M, 4] int32 (batch index, x, y, z), ``p2v`` [N] int64 (voxel of
            each point) and the spatial shape (3 ints).
        """
        scaled = xyz * self.voxel_scale
        scene_min = torch.stack([scene.amin(0) for scene in scaled.split(num_points)])  # [B, 3]
        grid = (scaled - scene_min[batch_idx]).long()
        voxel_coords, p2v = voxelize(torch.cat([batch_idx[:, None], grid], 1))
        spatial_shape = grid.amax(0).add(1).clamp(min=self.min_spatial_shape).tolist()
        return voxel_coords, p2v, spatial_shape

    def _superpoint_ids(self, points, batch_data_samples):
        """Check the inputs and return each scene's superpoint ids (``gt_pts_seg.sp_pts_mask``)."""
        width = 9 if self.with_normals else 6
        if not isinstance(points, (list, tuple)) or not points:
            raise ValueError('IKNE expects inputs["points"] as a non-empty list of [N, '
                             f'{width}] tensors, got {type(points).__name__}')
        if batch_data_samples is None or len(batch_data_samples) != len(points):
            raise ValueError('IKNE needs one data sample (with gt_pts_seg.sp_pts_mask) per '
                             f'scene: {len(points)} scenes, '
                             f'{None if batch_data_samples is None else len(batch_data_samples)}'
                             ' data samples')
        sp_ids = []
        for i, (p, sample) in enumerate(zip(points, batch_data_samples)):
            if p.dim() != 2 or p.shape[1] < width or len(p) == 0:
                raise ValueError(f'IKNE (with_normals={self.with_normals}) expects points of '
                                 f'scene {i} as a non-empty [N, >={width}] tensor (x, y, z, '
                                 f'r, g, b{", nx, ny, nz" if self.with_normals else ""}), '
                                 f'got {list(p.shape)}')
            sp = sample.gt_pts_seg.get('sp_pts_mask') if 'gt_pts_seg' in sample else None
            if sp is None or sp.shape != p.shape[:1]:
                raise ValueError(f'IKNE expects data_sample.gt_pts_seg.sp_pts_mask of scene {i} '
                                 f'as an int64 tensor [{len(p)}] (one superpoint id per point), '
                                 f'got {None if sp is None else list(sp.shape)}')
            sp_ids.append(sp.long())
        return sp_ids

    def loss(self, batch_inputs_dict, batch_data_samples, **kwargs):
        """The head's losses (a dict of tensors)."""
        losses = self.head.loss(self.extract_feat(batch_inputs_dict, batch_data_samples),
                                batch_data_samples)
        raise_flagged()  # the ops' CUDA range errors, which the matcher's host sync has let in
        return losses

    def parse_losses(self, losses):
        """mmengine's ``BaseModel.parse_losses`` (the total of the terms named '*loss*', and
        every term for the log) where every term is one number, as this model's are: the total
        as one stacked sum instead of a ``mean`` and an add per term, whose backward launched a
        kernel per term (about 40 a step) while the GPU waited for the host."""
        if not all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in losses.values()):
            return super().parse_losses(losses)
        loss = torch.stack([v for k, v in losses.items() if 'loss' in k]).sum()
        return loss, OrderedDict(loss=loss, **losses)

    def predict(self, batch_inputs_dict, batch_data_samples, **kwargs):
        """Fill each data sample's ``pred_pts_seg`` with per-point instance masks
        (``pts_instance_mask`` bool [K, N]), ``instance_labels`` and ``instance_scores``."""
        results = self.head.predict(self.extract_feat(batch_inputs_dict, batch_data_samples),
                                    batch_data_samples)
        for sample, result in zip(batch_data_samples, results):
            sample.pred_pts_seg = PointData(**dict(result.items()))  # Det3DDataSample's type
        raise_flagged()  # the ops' CUDA range errors, which post-processing's host syncs have let in
        return batch_data_samples

    def _forward(self, batch_inputs_dict, batch_data_samples=None, **kwargs):
        """The head's raw output (for tracing and benchmarks)."""
        return self.head(self.extract_feat(batch_inputs_dict, batch_data_samples))
