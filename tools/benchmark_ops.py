"""Time the extension ops against their pure-PyTorch references at ScanNet size.

    python tools/benchmark_ops.py [--device cpu|cuda] [--json OUT] [--repeats 20] [--kernels N]

Workloads: the synthetic ScanNet-size scene of every benchmark
(``ikne_plugin.datasets.synthetic_scene``: 150k points, voxelized at 2 cm); voxel_pool of
C = 32 features into those voxels; the RPE value term for 1 scene x 8 heads x 400 queries
x 2,000 superpoints x 32 dims, L = 48, with the bins of query centres and 2,000 of the
scene's superpoint centres (the decoder's case, where most superpoints of a row share a
few bins) and with uniform random bins; and the logit bias of the same layer
(rpe_attention_bias) on the scene's bins. Each line gives the median time of both in one
run (after warm-up, with torch.cuda.synchronize on CUDA) and their ratio; on CUDA also the
GPU busy time of a call (kernels and copies, torch.profiler, run after all the wall times):
where it is well below the wall time, the host bounds the call; ``--kernels N`` also lists the N
longest kernels of the extension's call with their GPU time. Peak memory is the largest
allocation above what was allocated before the call (torch.cuda.max_memory_allocated); it is
not measured on the CPU, where torch has no allocator statistics.
"""
import argparse
import functools
import json
import math
import statistics
import time

import torch

from ikne_plugin.datasets.synthetic_scene import synthetic_scene
from ikne_plugin.models.layers.contextual_rpe import relative_position_bins
from ikne_plugin.ops import ext_loader
from ikne_plugin.ops.rpe_attention_bias import rpe_attention_bias, rpe_attention_bias_reference
from ikne_plugin.ops.rpe_attention_value import rpe_attention_value, rpe_attention_value_reference
from ikne_plugin.ops.voxel_pool import voxel_pool, voxel_pool_reference
from ikne_plugin.ops.voxelize import voxelize, voxelize_reference
from ikne_plugin.utils import atomic_write, gpu_time_by_kernel, total_ms

VOXEL_SIZE = 0.02  # metres (DESIGN.md section 3)


def spin_up(device, seconds=1.0):
    """Keep the GPU busy for a while so that it runs at its working clocks."""
    x = torch.randn(4096, 4096, device=device)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x = (x @ x).tanh_()
        torch.cuda.synchronize(device)


def wall_time(fn, device, repeats, warmup=3):
    """Median seconds of fn(), each call waited for (torch.cuda.synchronize on CUDA)."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_work(fn, device, repeats):
    """({kernel name: GPU ms a call} or None, peak extra bytes) of fn() on CUDA."""
    kernels = gpu_time_by_kernel(fn, runs=repeats)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return kernels, torch.cuda.max_memory_allocated(device) - before


@functools.lru_cache(maxsize=1)
def scene_points():
    """[N, 3] points of the benchmarks' scene and their [N] superpoint ids (made once)."""
    scene = synthetic_scene(150_000, seed=0)
    return torch.from_numpy(scene['points'][:, :3]), torch.from_numpy(scene['superpoints'])


def room_coords(device):
    """(batch 0, x, y, z) voxel indices of the scene's points at 2 cm."""
    xyz = torch.floor(scene_points()[0] / VOXEL_SIZE).long()
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1).to(device)


def bench_voxelize(device, generator):
    coords = room_coords(device)
    num_voxels = voxelize(coords)[0].shape[0]
    label = f'voxelize 150k pts -> {num_voxels} voxels'
    return [
        (label + ' vs torch.unique', lambda: voxelize(coords),
         lambda: torch.unique(coords, dim=0, return_inverse=True)),
        (label + ' vs voxelize_reference', lambda: voxelize(coords),
         lambda: voxelize_reference(coords)),
    ]


def bench_voxel_pool(device, generator):
    voxel_coords, p2v = voxelize(room_coords(device))
    m = voxel_coords.shape[0]
    feats = torch.randn(len(p2v), 32, generator=generator).to(device)
    cases = []
    for mode in ('mean', 'max'):
        cases.append((f'voxel_pool {mode} C=32 fwd', lambda mode=mode: voxel_pool(feats, p2v, m, mode),
                      lambda mode=mode: voxel_pool_reference(feats, p2v, m, mode)))
        cases.append((f'voxel_pool {mode} C=32 fwd+bwd',
                      forward_backward(lambda f, mode=mode: voxel_pool(f, p2v, m, mode), feats),
                      forward_backward(lambda f, mode=mode: voxel_pool_reference(f, p2v, m, mode), feats)))
    return cases


def room_rel_idx(queries, keys, bins, generator):
    """[1, queries, keys, 3] bins of the offsets from query centres (uniform in the scene's
    box) to ``keys`` of its superpoint centres, as the decoder bins them: 10 cm bins, clamped
    at the ends, where every superpoint beyond 2.4 m falls, so most of a row shares a few bins."""
    xyz, superpoints = scene_points()
    centres = voxel_pool(xyz, superpoints, int(superpoints.max()) + 1)  # mean of each superpoint
    chosen = centres[torch.randperm(len(centres), generator=generator)[:keys]]
    queries_xyz = torch.rand(queries, 3, generator=generator) * xyz.max(0).values
    return relative_position_bins(queries_xyz[None], chosen[None], bins, 0.1)


def bench_rpe(device, generator):
    heads, queries, keys, dim, bins = 8, 400, 2000, 32, 48
    attn = torch.randn(1, heads, queries, keys, generator=generator).softmax(-1).to(device)
    table = torch.randn(3, bins, heads, dim, generator=generator).to(device)
    cases = []
    for layout, rel_idx in (
            ('room bins', room_rel_idx(queries, keys, bins, generator)),
            # (int32, as the decoder's relative_position_bins gives them)
            ('uniform bins', torch.randint(0, bins, (1, queries, keys, 3), generator=generator,
                                           dtype=torch.int32))):
        rel_idx = rel_idx.to(device)
        label = f'rpe_attention_value {heads}h x {queries}q x {keys}s x {dim}d L={bins}, {layout}'
        cases += [
            (label + ' fwd', lambda rel_idx=rel_idx: rpe_attention_value(attn, rel_idx, table),
             lambda rel_idx=rel_idx: rpe_attention_value_reference(attn, rel_idx, table)),
            (label + ' fwd+bwd',
             forward_backward(lambda a, t, rel_idx=rel_idx: rpe_attention_value(a, rel_idx, t), attn, table),
             forward_backward(lambda a, t, rel_idx=rel_idx: rpe_attention_value_reference(a, rel_idx, t),
                              attn, table)),
        ]
    # the query bias of the same layer: the queries projected on the RPE table, [1, H, Nq, 3L]
    q_bins = torch.randn(1, heads, queries, 3 * bins, generator=generator).to(device)
    rel_idx = room_rel_idx(queries, keys, bins, generator).to(device)
    label = f'rpe_attention_bias {heads}h x {queries}q x {keys}s L={bins}, room bins'
    cases += [
        (label + ' fwd', lambda: rpe_attention_bias(q_bins, rel_idx),
         lambda: rpe_attention_bias_reference(q_bins, rel_idx)),
        (label + ' fwd+bwd', forward_backward(lambda v: rpe_attention_bias(v, rel_idx), q_bins),
         forward_backward(lambda v: rpe_attention_bias_reference(v, rel_idx), q_bins)),
    ]
    return cases


def forward_backward(op, *inputs):
    """A closure: op on fresh leaves of inputs, then backward of the sum."""
    leaves = [x.detach().requires_grad_(True) for x in inputs]

    def run():
        out = op(*leaves)
        out.backward(torch.ones_like(out))
        for leaf in leaves:
            leaf.grad = None
    return run


# By --ops name; each returns [(label, op, reference)]; segment_mesh's benchmark can join them.
BENCHMARKS = dict(voxelize=bench_voxelize, voxel_pool=bench_voxel_pool, rpe=bench_rpe)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--ops', nargs='+', choices=list(BENCHMARKS),
                        help='run only these benchmarks (default: all)')
    parser.add_argument('--kernels', type=int, default=0, metavar='N',
                        help="on CUDA, also list the N longest kernels of each extension call")
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    if args.kernels and args.device != 'cuda':
        parser.error('--kernels: the GPU time by kernel is measured on CUDA only (--device cuda)')
    if ext_loader.load_ext() is None:
        parser.error('ikne_plugin._ext is not built: the numbers would compare the reference with itself')
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'device: {name}; torch {torch.__version__}; median of {args.repeats} after warm-up')
    print(f'{"op":80s} {"ext ms":>9s} {"ref ms":>9s} {"speedup":>8s}'
          + (f' {"ext GPU":>9s} {"ref GPU":>9s} {"ext MB":>8s} {"ref MB":>8s} {"mem":>6s}'
             if device.type == 'cuda' else ''))
    if device.type == 'cuda':
        spin_up(device)
    cases = [case for name in BENCHMARKS if not args.ops or name in args.ops
             for case in BENCHMARKS[name](device, torch.Generator().manual_seed(0))]
    # Every wall time before the first profile: once torch.profiler has run in a process, the
    # same calls take longer (13-15% on an H100, extension and reference alike).
    times = [(wall_time(op, device, args.repeats), wall_time(reference, device, args.repeats))
             for _, op, reference in cases]
    results = []
    for (label, op, reference), (op_time, ref_time) in zip(cases, times):
        op_kernels = ref_kernels = op_peak = ref_peak = None
        if device.type == 'cuda':
            (op_kernels, op_peak), (ref_kernels, ref_peak) = (gpu_work(fn, device, args.repeats)
                                                              for fn in (op, reference))
        row = dict(op=label, ext_ms=op_time * 1e3, ref_ms=ref_time * 1e3, speedup=ref_time / op_time,
                   ext_gpu_ms=total_ms(op_kernels), ref_gpu_ms=total_ms(ref_kernels),
                   ext_peak_mb=None if op_peak is None else op_peak / 2**20,
                   ref_peak_mb=None if ref_peak is None else ref_peak / 2**20)
        if args.kernels and op_kernels:
            row['ext_kernels_ms'] = dict(list(op_kernels.items())[:args.kernels])
        row['mem_ratio'] = (row['ext_peak_mb'] / row['ref_peak_mb']
                            if op_peak is not None and ref_peak else None)
        results.append(row)
        cuda = ('' if device.type != 'cuda' else
                f' {row["ext_gpu_ms"] or math.nan:9.3f} {row["ref_gpu_ms"] or math.nan:9.3f}'
                f' {row["ext_peak_mb"]:8.2f} {row["ref_peak_mb"]:8.2f} {row["mem_ratio"] or math.nan:6.3f}')
        print(f'{label:80s} {row["ext_ms"]:9.3f} {row["ref_ms"]:9.3f} {row["speedup"]:7.2f}x{cuda}')
        for kernel, ms in row.get('ext_kernels_ms', {}).items():
            print(f'    {ms * 1e3:8.1f} us  {kernel[:100]}')
    if args.json:
        payload = dict(device=name, torch=torch.__version__, repeats=args.repeats, results=results)
        atomic_write(args.json, json.dumps(payload, indent=2) + '\n')


if __name__ == '__main__':
    main()
