"""IKNE's kernel head: ISBNet-style instance kernels (point aggregators + dynamic convolution)."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import nn

from ikne_plugin.ops import furthest_point_sample
from ..layers import MLP, PointAggregator
from ..losses import truncated_svd_reconstruction
from ..task_modules import matrix_nms
from ..task_modules.padded_batch import PAD_LOGIT, pad_scenes

GEOMETRY_CHANNELS = 9  # superpoint - centre, superpoint - box min, box max - superpoint


@MODELS.register_module()
class IKNEKernelHead(BaseModule):
    """Kernel-based IKNE (the paper's kernel figure, whose pipeline is ISBNet's, CVPR 2023).

    Per point: semantic logits, an offset to the instance centroid and the distances to the
    six faces of the instance's axis-aligned box (MLPs on the backbone features).
    Instance-aware sampling: farthest point sampling of the foreground points *shifted by
    their offsets*, so the points of one instance collapse near its centroid and the samples
    spread over instances rather than over surface. Foreground = GT instance points in
    training (the predicted semantics are still noise early on), predicted non-background
    classes at inference; all points when fewer than ``num_candidates`` are foreground.
    Point Aggregator 1 pools ``num_candidates`` candidate features from ball queries in the
    shifted space; Point Aggregator 2 samples ``num_instances`` of the candidates (FPS) and
    pools their neighbouring candidates into the instance features. From each instance
    feature: class logits (+ no-object), an IoU score, a centre (its sampled position + a
    predicted delta), a box (the centre - / + softplus distances) and the weights of a
    3-layer dynamic convolution applied to every superpoint's ``mask_channels`` mask
    features concatenated with its position relative to the instance's centre and box
    (detached), giving a mask logit per superpoint.

    Training: point-wise losses here (semantic CE, offset L1 + direction, point box L1),
    instance losses in ``criterion`` (``IKNECriterion``: Hungarian matching, class CE, mask
    BCE + Dice, centre L1, box L1 + IoU, IoU-score MSE, IKA/ISG on the instance features).
    As the kernel figure draws ISG, its low-rank features are the truncated SVD of the
    candidate features run through Point Aggregator 2 (``low_rank_queries``).
    Inference: class probability x IoU score x mean mask probability per (instance, class)
    pair, matrix NMS within a class, then score > ``score_thr``, more than ``min_points``
    points, the ``topk`` best.

    Args:
        in_channels: backbone point feature channels.
        num_classes: instance classes; instance class c is semantic class
            c + len(background_classes).
        num_semantic_classes: semantic classes of ``pts_semantic_mask`` (that value = ignore).
        background_classes: semantic classes without instances (wall, floor).
        channels: candidate / instance feature channels.
        mask_channels: mask feature channels of the dynamic convolution.
        num_candidates, radius1, num_neighbors1: Point Aggregator 1.
        num_instances, radius2, num_neighbors2: Point Aggregator 2.
        criterion: config of the instance criterion (``IKNECriterion``).
        semantic_weight, offset_weight, offset_dir_weight, point_box_weight: point losses.
        score_thr, min_points, topk, nms_kernel: inference.
    """

    def __init__(self, in_channels: int = 32, num_classes: int = 18, num_semantic_classes: int = 20,
                 background_classes: Sequence[int] = (0, 1), channels: int = 128, mask_channels: int = 32,
                 num_candidates: int = 2048, radius1: float = 0.2, num_neighbors1: int = 32,
                 num_instances: int = 256, radius2: float = 0.4, num_neighbors2: int = 32,
                 criterion: Optional[dict] = None, semantic_weight: float = 1.0, offset_weight: float = 1.0,
                 offset_dir_weight: float = 1.0, point_box_weight: float = 1.0, score_thr: float = 0.2,
                 min_points: int = 100, topk: int = 100, nms_kernel: str = 'linear',
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if num_instances > num_candidates:
            raise ValueError(f'num_instances ({num_instances}) must not exceed num_candidates ({num_candidates})')
        self.num_classes = num_classes
        self.num_semantic_classes = num_semantic_classes
        self.register_buffer('background', torch.as_tensor(list(background_classes), dtype=torch.long),
                             persistent=False)
        self.num_candidates = num_candidates
        self.num_instances = num_instances
        self.semantic_weight = semantic_weight
        self.offset_weight = offset_weight
        self.offset_dir_weight = offset_dir_weight
        self.point_box_weight = point_box_weight
        self.score_thr = score_thr
        self.min_points = min_points
        self.topk = topk
        self.nms_kernel = nms_kernel

        self.semantic_head = MLP(in_channels, in_channels, num_semantic_classes, 2)
        self.offset_head = MLP(in_channels, in_channels, 3, 2)
        self.point_box_head = MLP(in_channels, in_channels, 6, 2)
        self.aggregator1 = PointAggregator(in_channels + 6, channels, radius1, num_neighbors1)
        self.aggregator2 = PointAggregator(channels, channels, radius2, num_neighbors2)
        self.cls_head = MLP(channels, channels, num_classes + 1, 2)
        self.score_head = MLP(channels, channels, 1, 2)
        self.center_head = MLP(channels, channels, 3, 2)
        self.box_head = MLP(channels, channels, 6, 2)
        dims = [mask_channels + GEOMETRY_CHANNELS, mask_channels, mask_channels, 1]
        self.kernel_shapes = list(zip(dims[:-1], dims[1:]))  # (in, out) of the 3 dynamic layers
        self.kernel_head = MLP(channels, channels, sum(i * o + o for i, o in self.kernel_shapes), 2)
        self.mask_feat_head = MLP(in_channels, in_channels, mask_channels, 2)
        self.criterion = MODELS.build(criterion) if criterion is not None else None

    # ------------------------------------------------------------------ forward
    def forward(self, x: Dict, foreground: Optional[Sequence[torch.Tensor]] = None) -> Dict:
        """Point-wise and instance predictions of a batch.

        Args:
            x: per-scene lists ``pts_feats`` [N_i, C], ``pts_xyz`` [N_i, 3], ``sp_ids`` [N_i],
                ``sp_feats`` [S_i, C], ``sp_xyz`` [S_i, 3] (the detector's ``extract_feat``).
            foreground: per scene, bool [N_i] points to sample instances from; default the
                predicted non-background points.

        Returns:
            dict with per-scene lists ``semantic_logits`` [N_i, 20], ``offsets`` [N_i, 3],
            ``point_boxes`` [N_i, 6]; ``layers``: one dict of ``cls_logits`` [B, Q, C+1],
            ``scores`` [B, Q, 1], ``centers`` [B, Q, 3], ``boxes`` [B, Q, 6] (min xyz, max
            xyz) and ``mask_logits`` [B, Q, max S_i] (PAD_LOGIT past scene i's S_i);
            ``sp_counts``, the S_i (host ints); ``queries`` [B, Q, channels] (the instance
            features); in training with an ISG loss ``low_rank_queries`` too.
        """
        if len(x['pts_feats']) == 0:
            raise ValueError('IKNEKernelHead: empty batch')
        isg = self.criterion.isg_loss if self.training and self.criterion is not None else None
        out = dict(semantic_logits=[], offsets=[], point_boxes=[])
        pools = []
        for b, (feats, xyz) in enumerate(zip(x['pts_feats'], x['pts_xyz'])):
            semantic_logits = self.semantic_head(feats)
            offsets = self.offset_head(feats)
            out['semantic_logits'].append(semantic_logits)
            out['offsets'].append(offsets)
            out['point_boxes'].append(self.point_box_head(feats))
            fg = (foreground[b] if foreground is not None else
                  ~torch.isin(semantic_logits.argmax(-1), self.background))
            pools.append(self._sampling_pool(xyz, offsets, fg))
        # instance-aware FPS for the whole batch: candidates among each scene's pool, then instances
        # among the candidates (all scenes have num_candidates of them: no padding)
        cand_xyz = [shifted[cand] for (_, shifted), cand in zip(pools, self._candidates([s for _, s in pools]))]
        instances = furthest_point_sample(torch.stack(cand_xyz), self.num_instances).unbind(0)
        scenes = [self._instances(feats, point_boxes, pool, shifted, cand, inst, sp_feats, sp_xyz, isg)
                  for feats, point_boxes, (pool, shifted), cand, inst, sp_feats, sp_xyz in zip(
                      x['pts_feats'], out['point_boxes'], pools, cand_xyz, instances, x['sp_feats'],
                      x['sp_xyz'])]
        out['layers'] = [dict(
            {k: torch.stack([s[k] for s in scenes]) for k in ('cls_logits', 'scores', 'centers', 'boxes')},
            mask_logits=pad_scenes([s['mask_logits'] for s in scenes], PAD_LOGIT))]
        out['sp_counts'] = [len(sp_feats) for sp_feats in x['sp_feats']]
        out['queries'] = torch.stack([s['queries'] for s in scenes])
        if isg is not None:
            out['low_rank_queries'] = torch.stack([s['low_rank_queries'] for s in scenes])
        return out

    def _sampling_pool(self, xyz, offsets, fg):
        """(pool, shifted): the scene's points to sample candidates from (its foreground, or all
        points if fewer than ``num_candidates`` are foreground) and their centre-shifted xyz."""
        if len(xyz) < self.num_candidates:
            raise ValueError(f'IKNEKernelHead: a scene has {len(xyz)} points, fewer than '
                             f'num_candidates={self.num_candidates}')
        pool = fg.nonzero()[:, 0] if int(fg.sum()) >= self.num_candidates else torch.arange(
            len(xyz), device=xyz.device)
        return pool, (xyz + offsets).detach()[pool]

    def _candidates(self, shifted):
        """Each scene's ``num_candidates`` farthest points of its ``shifted`` points, one FPS call
        for the batch (its scenes in parallel on the GPU). Scenes are padded to the longest with
        copies of their first point, which is the first sample: a copy stays at distance 0 and
        loses every tie to a real point (ties go to the smallest index), so each scene gets
        exactly its own FPS."""
        longest = max(len(points) for points in shifted)
        padded = torch.stack([torch.cat([points, points[:1].expand(longest - len(points), 3)]) for points in shifted])
        return furthest_point_sample(padded, self.num_candidates).unbind(0)

    def _instances(self, feats, point_boxes, pool, shifted, cand_xyz, inst, sp_feats, sp_xyz, isg) -> Dict:
        """The two aggregators, the instance heads and the dynamic convolution of one scene, from
        its sampling pool, the pool's shifted xyz, the candidates' xyz and the instances (indices
        into the candidates)."""
        idx1 = self.aggregator1.group(cand_xyz, shifted)
        cand_feats = self.aggregator1(cand_xyz, shifted, torch.cat([feats, point_boxes.detach()], 1)[pool], idx1)
        inst_xyz = cand_xyz[inst]
        idx2 = self.aggregator2.group(inst_xyz, cand_xyz)
        queries = self.aggregator2(inst_xyz, cand_xyz, cand_feats, idx2)

        centers = inst_xyz + self.center_head(queries)
        extent = F.softplus(self.box_head(queries))
        boxes = torch.cat([centers - extent[:, :3], centers + extent[:, 3:]], 1)
        scene = dict(cls_logits=self.cls_head(queries), scores=self.score_head(queries), centers=centers,
                     boxes=boxes, queries=queries,
                     mask_logits=self._dynamic_conv(self.kernel_head(queries), self.mask_feat_head(sp_feats),
                                                    sp_xyz, centers.detach(), boxes.detach()))
        if isg is not None:
            low_rank = truncated_svd_reconstruction(cand_feats, isg.rank)
            scene['low_rank_queries'] = self.aggregator2(inst_xyz, cand_xyz, low_rank, idx2)
        return scene

    def _dynamic_conv(self, kernels, mask_feats, sp_xyz, centers, boxes) -> torch.Tensor:
        """Mask logits [Q, S]: each instance's 3 generated linear layers (ReLU between) on
        [mask features, superpoint - centre, superpoint - box min, box max - superpoint]."""
        sp_xyz = sp_xyz.to(mask_feats.dtype)
        geometry = torch.cat([sp_xyz[None] - centers[:, None], sp_xyz[None] - boxes[:, None, :3],
                              boxes[:, None, 3:] - sp_xyz[None]], -1)  # [Q, S, 9]
        h = torch.cat([mask_feats[None].expand(len(kernels), -1, -1), geometry], -1)
        start = 0
        for i, (c_in, c_out) in enumerate(self.kernel_shapes):
            weight = kernels[:, start:start + c_in * c_out].view(-1, c_in, c_out)
            bias = kernels[:, start + c_in * c_out:start + c_in * c_out + c_out]
            start += c_in * c_out + c_out
            h = torch.baddbmm(bias[:, None], h, weight)
            if i < len(self.kernel_shapes) - 1:
                h = F.relu(h)
        return h[..., 0]

    # ------------------------------------------------------------------ training
    def loss(self, x: Dict, batch_data_samples: Sequence) -> Dict[str, torch.Tensor]:
        """Point-wise and instance losses (GT: ``gt_pts_seg.pts_semantic_mask``,
        ``pts_instance_mask``; ``gt_instances_3d.labels_3d``, ``sp_masks``, ``centers``)."""
        if self.criterion is None:
            raise ValueError('IKNEKernelHead.loss needs a criterion in the head config')
        point_instances = [ds.gt_pts_seg.pts_instance_mask for ds in batch_data_samples]
        preds = self(x, foreground=[inst >= 0 for inst in point_instances])
        gts, point_targets = [], []
        for xyz, inst, ds in zip(x['pts_xyz'], point_instances, batch_data_samples):
            gt = ds.gt_instances_3d
            boxes = self._instance_boxes(xyz, inst, len(gt.labels_3d))
            gts.append(InstanceData(labels_3d=gt.labels_3d, sp_masks=gt.sp_masks, centers=gt.centers,
                                    boxes=boxes))
            point_targets.append((gt.centers, boxes))
        losses = self._point_losses(preds, x['pts_xyz'], point_instances,
                                    [ds.gt_pts_seg.pts_semantic_mask for ds in batch_data_samples], point_targets)
        losses.update(self.criterion(preds, gts))
        return losses

    @staticmethod
    def _instance_boxes(xyz: torch.Tensor, inst: torch.Tensor, num: int) -> torch.Tensor:
        """Axis-aligned boxes [K, 6] (min xyz, max xyz) of the GT instances' points."""
        valid = inst >= 0
        index = inst[valid][:, None].expand(-1, 3)
        lo = xyz.new_full((num, 3), float('inf')).scatter_reduce(0, index, xyz[valid], 'amin')
        hi = xyz.new_full((num, 3), -float('inf')).scatter_reduce(0, index, xyz[valid], 'amax')
        return torch.cat([lo, hi], 1)

    def _point_losses(self, preds, pts_xyz, point_instances, semantics, point_targets) -> Dict[str, torch.Tensor]:
        """Semantic CE over all points; offset L1 + direction and point box L1 over instance points."""
        semantic_logits = torch.cat(preds['semantic_logits'])
        loss_sem = F.cross_entropy(semantic_logits, torch.cat(semantics).to(semantic_logits.device),
                                   ignore_index=self.num_semantic_classes)
        offsets, gt_offsets, boxes, gt_boxes = [], [], [], []
        for b, (xyz, inst, (centers, inst_boxes)) in enumerate(zip(pts_xyz, point_instances, point_targets)):
            valid = inst >= 0
            xyz, inst = xyz[valid], inst[valid]
            offsets.append(preds['offsets'][b][valid])
            gt_offsets.append(centers.to(xyz.dtype)[inst] - xyz)
            boxes.append(preds['point_boxes'][b][valid])
            gt_boxes.append(torch.cat([xyz - inst_boxes[inst, :3], inst_boxes[inst, 3:] - xyz], 1))
        offsets, gt_offsets = torch.cat(offsets), torch.cat(gt_offsets)
        boxes, gt_boxes = torch.cat(boxes), torch.cat(gt_boxes)
        if len(offsets):
            loss_offset = (offsets - gt_offsets).abs().sum(-1).mean()
            loss_dir = -F.cosine_similarity(offsets, gt_offsets, dim=-1, eps=1e-8).mean()
            loss_box = (boxes - gt_boxes).abs().sum(-1).mean()
        else:  # no instance point in the batch: zeros that keep the heads in the graph
            loss_offset = loss_dir = loss_box = semantic_logits.sum() * 0 + sum(
                o.sum() + p.sum() for o, p in zip(preds['offsets'], preds['point_boxes'])) * 0
        return dict(loss_sem=self.semantic_weight * loss_sem,
                    loss_offset=self.offset_weight * loss_offset,
                    loss_offset_dir=self.offset_dir_weight * loss_dir,
                    loss_point_box=self.point_box_weight * loss_box)

    # ------------------------------------------------------------------ inference
    def predict(self, x: Dict, batch_data_samples: Sequence) -> List[InstanceData]:
        """Per-point instances of each scene: ``InstanceData`` with ``pts_instance_mask`` bool
        [K, N_i], ``instance_labels`` int64 [K] (0..num_classes-1), ``instance_scores`` [K]."""
        out = self(x)
        layer = out['layers'][0]
        return [
            self._predict_scene(layer['cls_logits'][b], layer['scores'][b], layer['mask_logits'][b, :, :n], sp_ids)
            for b, (n, sp_ids) in enumerate(zip(out['sp_counts'], x['sp_ids']))
        ]

    def _predict_scene(self, cls_logits, scores, mask_logits, sp_ids) -> InstanceData:
        """Scored (instance, class) pairs -> matrix NMS -> score, size and top-k filters."""
        masks = mask_logits > 0
        mask_prob = (mask_logits.sigmoid() * masks).sum(-1) / masks.sum(-1).clamp_min(1)
        inst_scores = scores[:, 0].clamp(0, 1) * mask_prob
        pair_scores = (cls_logits.softmax(-1)[:, :-1] * inst_scores[:, None]).flatten()
        # Matrix NMS only lowers scores: pairs below the threshold now would be dropped anyway.
        keep = (pair_scores > self.score_thr).nonzero()[:, 0]
        pair_scores, order = pair_scores[keep].sort(descending=True)
        keep = keep[order]
        inst, labels = keep // self.num_classes, keep % self.num_classes
        sp_size = torch.bincount(sp_ids, minlength=mask_logits.shape[1]).to(mask_logits.dtype)
        weighted = masks.to(mask_logits.dtype)
        inter = (weighted * sp_size) @ weighted.T
        area = inter.diagonal()
        iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1)
        pair_scores = matrix_nms(pair_scores, labels, iou[inst][:, inst], self.nms_kernel)
        keep = (pair_scores > self.score_thr) & (area[inst] > self.min_points)
        pair_scores, inst, labels = pair_scores[keep], inst[keep], labels[keep]
        pair_scores, order = pair_scores.topk(min(self.topk, len(pair_scores)))
        inst, labels = inst[order], labels[order]
        return InstanceData(pts_instance_mask=masks[inst][:, sp_ids], instance_labels=labels,
                            instance_scores=pair_scores)
