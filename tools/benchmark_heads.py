"""Inference cost of the two IKNE heads on one ScanNet-size scene, side by side.

    python tools/benchmark_heads.py [--device cpu|cuda] [--points 150000] [--repeat 3]

Builds each head from its ScanNet config (``configs/ikne_trans_scannet.py``,
``configs/ikne_kernel_scannet.py``; random initial weights) and times, on the synthetic
ScanNet-size scene of every benchmark (``ikne_plugin.datasets.synthetic_scene``: 150k
points, about 2.9k superpoints), the head's forward pass and its full ``predict`` (forward + post-processing
to per-point masks). The backbone is left out: both heads read the same backbone features
(random here). Random weights leave most (instance, class) pairs under the kernel head's
score threshold, so its matrix NMS is cheap here; the forward time does not depend on it.
Prints the best of ``--repeat`` runs in milliseconds, as wall time and, on the CPU, as this
process's CPU time (which, on a machine shared with other jobs, is what the head costs).
"""
import argparse
import os
import time

import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config

import ikne_plugin.models  # noqa: F401  (registers the heads)
from ikne_plugin.datasets.synthetic_scene import synthetic_scene
from ikne_plugin.ops import voxel_pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = dict(transformer='configs/ikne_trans_scannet.py', kernel='configs/ikne_kernel_scannet.py')


def scannet_size_scene(num_points, channels, device):
    """The head's input ``x`` for the benchmarks' synthetic scene of ``num_points`` points."""
    scene = synthetic_scene(num_points, seed=0)
    xyz = torch.from_numpy(scene['points'][:, :3])
    sp_ids = torch.from_numpy(scene['superpoints'])
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(len(xyz), channels, generator=g)
    num_sp = int(sp_ids.max()) + 1
    x = dict(pts_feats=[feats], pts_xyz=[xyz], sp_ids=[sp_ids], sp_feats=[voxel_pool(feats, sp_ids, num_sp)],
             sp_xyz=[voxel_pool(xyz, sp_ids, num_sp)])
    return {k: [t.to(device) for t in v] for k, v in x.items()}


def best_ms(repeat, fn, device):
    """Best wall and process CPU times of ``repeat`` calls (after one warm-up call), in ms."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * min(wall), 1000 * min(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help="torch device, e.g. 'cpu' or 'cuda'")
    parser.add_argument('--points', type=int, default=150000, help='points of the synthetic scene')
    parser.add_argument('--repeat', type=int, default=3, help='timed runs per measurement (best is reported)')
    args = parser.parse_args()
    device = torch.device(args.device)
    heads = {name: MODELS.build(Config.fromfile(os.path.join(ROOT, path)).model.head).to(device).eval()
             for name, path in CONFIGS.items()}
    channels = {head.semantic_head.layers[0].in_features if name == 'kernel' else head.input_proj[0].in_features
                for name, head in heads.items()}
    if len(channels) != 1:
        raise SystemExit(f'the heads read different backbone widths: {channels}')
    x = scannet_size_scene(args.points, channels.pop(), device)
    print(f'device {device} ({torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}, '
          f'{torch.get_num_threads()} threads); scene: {len(x["pts_xyz"][0])} points, '
          f'{len(x["sp_xyz"][0])} superpoints')
    print(f'{"head":<12}{"params":>10}{"forward ms (wall/cpu)":>24}{"predict ms (wall/cpu)":>24}')
    with torch.no_grad():
        for name, head in heads.items():
            params = sum(p.numel() for p in head.parameters())
            forward = best_ms(args.repeat, lambda: head(x), device)
            predict = best_ms(args.repeat, lambda: head.predict(x, None), device)
            print(f'{name:<12}{params:>10,}' + ''.join(f'{f"{w:.1f} / {c:.1f}":>24}' for w, c in (forward, predict)))


if __name__ == '__main__':
    main()
