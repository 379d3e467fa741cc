"""Segment the instances of one's own scene with a trained model; write a coloured PLY, a JSON
list of the instances and a PNG (top and oblique views).

    python tools/infer.py CONFIG CHECKPOINT INPUT --out-dir OUT [--device cpu|cuda]
        [--score-thr 0.5] [--max-points 1000000] [--superpoint-size 0.1]

INPUT: a PLY mesh or point cloud (binary, optionally .ply.gz; ScanNet's *_vh_clean_2.ply)
or a converter points/*.bin. Superpoints: given ones if found beside the input (ScanNet's
segs.json, the converter's super_points/), else ScanNet's mesh segmentator on a mesh, else a
voxel grid of --superpoint-size metres (a bare point cloud); see
ikne_plugin/datasets/scene_input.py. A scene of more than --max-points points is subsampled
(one point per cell of the finest grid that leaves few enough) and every point takes the
prediction of its cell's representative. The inputs are built by the config's test pipeline (its annotation
transforms left out). Writes OUT/<scene>_instances.{ply,json,png}.
"""
import argparse
import json
import os
import os.path as osp
import tempfile
import time

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from ikne_plugin.datasets.label_map import CLASSES
from ikne_plugin.datasets.ply import write_ply
from ikne_plugin.datasets.scene_input import load_scene, scene_superpoints, subsample
from ikne_plugin.utils import UserInputError, atomic_write, load_model_checkpoint, run_tool

# test-pipeline transforms that need label files, which a user's scene does not have
ANNOTATION_TRANSFORMS = ('LoadAnnotations3D', 'PointSegClassMapping')
NO_INSTANCE_GREY = np.array([0.78, 0.78, 0.78])
MAX_DRAWN_POINTS = 200_000
OBLIQUE_AZIMUTH, OBLIQUE_ELEVATION = np.radians(-50), np.radians(35)


def parse_args():
    parser = argparse.ArgumentParser(description='Instance segmentation of one scene.')
    parser.add_argument('config', help='model config (its test pipeline builds the inputs)')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('input', help='.ply / .ply.gz mesh or point cloud, or points/*.bin')
    parser.add_argument('--out-dir', required=True, help='where the PLY, JSON and PNG go')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.5,
                        help='keep instances scoring at least this')
    parser.add_argument('--max-points', type=int, default=1_000_000,
                        help='subsample larger scenes to at most this many points')
    parser.add_argument('--superpoint-size', type=float, default=0.1,
                        help='voxel-grid superpoint size (metres) for bare point clouds')
    return parser.parse_args()


class Stopwatch:
    """Print each stage with its duration: the progress of a long inference."""

    def __init__(self):
        self.start = time.perf_counter()

    def done(self, message):
        now = time.perf_counter()
        print(f'[{now - self.start:7.2f} s] {message}', flush=True)
        self.start = now


def build_model(cfg, checkpoint, device):
    """The config's model with the checkpoint loaded strictly, and the class names (the
    checkpoint's dataset meta, else ScanNet's 18)."""
    from mmdet3d.registry import MODELS
    model = MODELS.build(cfg.model)
    ckpt = load_model_checkpoint(model, checkpoint)
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    classes = (meta.get('dataset_meta') or {}).get('classes', CLASSES)
    return model.to(device).eval(), list(classes)


def predict(model, cfg, points, superpoints):
    """Run the config's test pipeline (without its annotation transforms) and the model on
    ``points`` [M, 9] (converter layout); returns masks bool [K, M], labels, scores."""
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline
                if t['type'] not in ANNOTATION_TRANSFORMS]
    with tempfile.TemporaryDirectory() as tmp:
        points_file, sp_file = osp.join(tmp, 'points.bin'), osp.join(tmp, 'super_points.bin')
        points.astype(np.float32).tofile(points_file)
        superpoints.astype(np.int64).tofile(sp_file)
        data = Compose(pipeline)(dict(lidar_points=dict(lidar_path=points_file),
                                      lidar_path=points_file, super_pts_path=sp_file,
                                      sample_idx=0, scene_name='input'))
    if len(data['inputs']['points']) != len(points):
        raise UserInputError(f'{cfg.filename}: its test pipeline changes the number of points '
                             f'({len(points)} -> {len(data["inputs"]["points"])}); infer.py '
                             'needs one that keeps every point')
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([data]))[0].pred_pts_seg
    return (pred.pts_instance_mask.cpu().numpy(), pred.instance_labels.cpu().numpy(),
            pred.instance_scores.float().cpu().numpy())


def instance_colors(labels):
    """One colour per instance: its class's colour (tab20), lightened by a per-instance step
    so neighbours of one class stay apart."""
    import matplotlib
    palette = matplotlib.colormaps['tab20'].colors
    shade = np.array([0.0, 0.35, 0.15, 0.5])
    colors = np.array([palette[label % len(palette)] for label in labels]).reshape(-1, 3)
    step = shade[np.arange(len(labels)) % len(shade), None]
    return colors + (1 - colors) * step


def render(xyz, point_colors, labels, classes, title, path):
    """Top and oblique orthographic views, points drawn far to near, a legend of classes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if len(xyz) > MAX_DRAWN_POINTS:
        drawn = np.random.default_rng(0).choice(len(xyz), MAX_DRAWN_POINTS, replace=False)
        xyz, point_colors = xyz[drawn], point_colors[drawn]
    centred = xyz - xyz.mean(0)
    x, y, z = centred.T
    cos_a, sin_a = np.cos(OBLIQUE_AZIMUTH), np.sin(OBLIQUE_AZIMUTH)
    along, across = x * sin_a + y * cos_a, x * cos_a - y * sin_a
    cos_e, sin_e = np.cos(OBLIQUE_ELEVATION), np.sin(OBLIQUE_ELEVATION)
    views = [('top view', x, y, z),  # depth: lower points drawn first
             ('oblique view', across, z * cos_e + along * sin_e, -(along * cos_e - z * sin_e))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    size = float(np.clip(2e5 / max(len(xyz), 1), 0.5, 8))  # denser scenes, smaller dots
    for ax, (name, u, v, nearness) in zip(axes, views):
        order = np.argsort(nearness, kind='stable')
        ax.scatter(u[order], v[order], c=point_colors[order], s=size, marker='.',
                   linewidths=0, rasterized=True)
        ax.set_aspect('equal')
        ax.set_title(name)
        ax.axis('off')
    present, counts = np.unique(labels, return_counts=True)
    handles = [Patch(color=instance_colors([c])[0], label=f'{classes[c]} ({n})')  # class colour
               for c, n in zip(present, counts)]
    if handles:
        fig.legend(handles=handles, loc='lower center', ncol=min(6, len(handles)),
                   frameon=False, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.95))
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def instance_ids(masks, scores, owner):
    """Each point's instance (index into ``masks``, -1 for none): where masks overlap, the
    highest-scoring one; ``owner`` maps every scene point to its representative."""
    ids = np.full(masks.shape[1], -1, np.int64)
    for k in np.argsort(scores, kind='stable'):  # ascending: better instances paint last
        ids[masks[k]] = k
    return ids[owner]


def instance_records(xyz, masks, labels, scores, owner, classes):
    """The JSON entries of the instances (best first): class, score, points, box. Counts and
    boxes come from per-representative sums over the points it stands for (one pass)."""
    order = np.argsort(owner, kind='stable')
    starts = np.searchsorted(owner[order], np.arange(masks.shape[1]))
    count = np.diff(np.append(starts, len(owner)))
    lows = np.minimum.reduceat(xyz[order], starts)
    highs = np.maximum.reduceat(xyz[order], starts)
    records = []
    for k in range(len(scores)):
        lo, hi = lows[masks[k]].min(0), highs[masks[k]].max(0)
        records.append(dict(id=k, label=classes[labels[k]], label_index=int(labels[k]),
                            score=round(float(scores[k]), 4),
                            num_points=int(count[masks[k]].sum()),
                            box_min=lo.round(4).tolist(), box_max=hi.round(4).tolist(),
                            center=((lo + hi) / 2).round(4).tolist(),
                            size=(hi - lo).round(4).tolist()))
    return records


def write_ply_result(path, scene, ids, labels, colors):
    """The scene with each instance's colour and per-vertex ``instance`` and ``label``
    (-1 for none); faces kept, so MeshLab and Open3D show the mesh."""
    point_colors = np.vstack([colors, NO_INSTANCE_GREY])[ids]  # ids == -1 picks the grey
    vertex = np.empty(len(ids), [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'),
                                 ('green', 'u1'), ('blue', 'u1'), ('instance', '<i4'),
                                 ('label', '<i4')])
    for i, axis in enumerate('xyz'):
        vertex[axis] = scene.points[:, i]
    for i, channel in enumerate(('red', 'green', 'blue')):
        vertex[channel] = np.round(point_colors[:, i] * 255)
    vertex['instance'] = ids
    vertex['label'] = np.append(labels, -1)[ids]
    write_ply(path, vertex, scene.faces, comment='ikne_plugin tools/infer.py instances')
    return point_colors


def scene_name(path):
    """The input's file name without .gz, .ply or .bin: the outputs' prefix."""
    name = osp.basename(path)
    for suffix in ('.gz', '.ply', '.bin'):
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    return name


def main():
    args = parse_args()
    if args.max_points < 1:
        raise UserInputError(f'--max-points must be positive, got {args.max_points}')
    clock = Stopwatch()
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    model, classes = build_model(cfg, args.checkpoint, args.device)
    clock.done(f'model {type(model).__name__} from {args.checkpoint} on {args.device}')

    scene = load_scene(args.input)
    num_points = len(scene.points)
    clock.done(f'read {args.input}: {num_points:,} points, {len(scene.faces):,} faces')
    if not scene.has_colors:
        print(f'warning: {args.input} has no vertex colours; the model sees grey everywhere, '
              'so expect worse predictions than on a coloured scan', flush=True)
    if model.with_normals and not scene.has_normals:
        raise UserInputError(f'{args.input}: the model uses normals (with_normals=True) but '
                             'this point cloud has neither normals (nx, ny, nz) nor faces')
    superpoints, how = scene_superpoints(scene, args.superpoint_size)
    clock.done(f'superpoints ({how}): {len(np.unique(superpoints)):,}')
    keep, owner, cell = subsample(scene.points[:, :3], args.max_points)
    if len(keep) < num_points:
        clock.done(f'subsampled to {len(keep):,} points, one per {cell * 100:.2g} cm cell (more '
                   f'than --max-points {args.max_points:,}); each point takes its '
                   'representative\'s prediction')

    masks, labels, scores = predict(model, cfg, scene.points[keep], superpoints[keep])
    chosen = np.flatnonzero(scores >= args.score_thr)
    chosen = chosen[np.argsort(-scores[chosen], kind='stable')]
    masks, labels, scores = masks[chosen], labels[chosen], scores[chosen]
    clock.done(f'{len(scores)} instances with score >= {args.score_thr}')

    name = scene_name(args.input)
    out = osp.join(args.out_dir, name + '_instances')
    ids = instance_ids(masks, scores, owner)
    colors = instance_colors(labels)
    point_colors = write_ply_result(out + '.ply', scene, ids, labels, colors)
    xyz = scene.points[:, :3]
    summary = dict(input=osp.abspath(args.input), checkpoint=osp.abspath(args.checkpoint),
                   config=osp.abspath(args.config), num_points=num_points,
                   num_points_model=len(keep), superpoints=how, score_thr=args.score_thr,
                   instances=instance_records(xyz, masks, labels, scores, owner, classes))
    atomic_write(out + '.json', json.dumps(summary, indent=1) + '\n')
    render(xyz, point_colors, labels, classes,
           f'{name}: {len(scores)} instances (score >= {args.score_thr})', out + '.png')
    clock.done(f'wrote {out}.ply, .json, .png')


if __name__ == '__main__':
    run_tool(main)
