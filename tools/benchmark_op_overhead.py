"""Host overhead of the op wrappers: microseconds a call at tiny sizes, where the kernels take
next to nothing, so that what is left is the host's fixed cost of a call.

    python tools/benchmark_op_overhead.py [--device cpu|cuda] [--calls 2000] [--repeats 7]

For each op, forward and forward+backward (backward of ones through autograd on leaves that
require grad, as tools/benchmark_ops.py does): the public wrapper, the bare extension
functions (forward, then backward, as the wrapper calls them, without autograd) and the
pure-PyTorch reference. Each figure is the median over ``--repeats`` of the mean time of
``--calls`` calls in a row (on CUDA, the calls are queued without waiting and the time
includes one torch.cuda.synchronize at the end: the tiny kernels keep up with the host).
"""
import argparse
import statistics
import time

import torch
from benchmark_ops import forward_backward  # (tools/ is on the path of a script run from it)

from ikne_plugin.ops import ext_loader
from ikne_plugin.ops.rpe_attention_bias import rpe_attention_bias, rpe_attention_bias_reference
from ikne_plugin.ops.rpe_attention_value import rpe_attention_value, rpe_attention_value_reference
from ikne_plugin.ops.voxel_pool import voxel_pool, voxel_pool_reference
from ikne_plugin.ops.voxelize import voxelize, voxelize_reference


def cases(device):
    """[(label, wrapper, extension, reference)] of closures, for each op forward and
    forward+backward (None: voxelize has no backward)."""
    ext = ext_loader.load_ext()
    gen = torch.Generator().manual_seed(0)
    flag = torch.zeros(1, dtype=torch.int32, pin_memory=device.type == 'cuda')

    feats = torch.randn(64, 4, generator=gen).to(device)  # voxel_pool: N = 64, C = 4, M = 16
    p2v = torch.randint(0, 16, (64,), generator=gen).to(device)

    def pool_ext_bwd():
        out, aux = ext.voxel_pool_forward(feats, p2v, 16, False, flag)
        ext.voxel_pool_backward(torch.ones_like(out), p2v, aux, False)

    # rpe_attention_value: B = 1, H = 1, Nq = 4, Ns = 8, D = 4, L = 4
    attn = torch.rand(1, 1, 4, 8, generator=gen).to(device)
    rel_idx = torch.randint(0, 4, (1, 4, 8, 3), generator=gen).to(device)
    table = torch.randn(3, 4, 1, 4, generator=gen).to(device)

    def value_ext_bwd():
        out, hist = ext.rpe_attention_value_forward(attn, rel_idx, table, True, flag)
        ext.rpe_attention_value_backward(torch.ones_like(out), rel_idx, table, hist, True)

    bins = torch.randn(1, 1, 4, 12, generator=gen).to(device)  # rpe_attention_bias: the same pairs

    def bias_ext_bwd():
        out = ext.rpe_attention_bias_forward(bins, rel_idx, flag)
        ext.rpe_attention_bias_backward(torch.ones_like(out), rel_idx, 4)

    coords = torch.randint(0, 8, (64, 4), generator=gen).to(device)  # voxelize: N = 64
    return [
        ('voxel_pool mean fwd', lambda: voxel_pool(feats, p2v, 16),
         lambda: ext.voxel_pool_forward(feats, p2v, 16, False, flag),
         lambda: voxel_pool_reference(feats, p2v, 16)),
        ('voxel_pool mean fwd+bwd', forward_backward(lambda f: voxel_pool(f, p2v, 16), feats), pool_ext_bwd,
         forward_backward(lambda f: voxel_pool_reference(f, p2v, 16), feats)),
        ('rpe_attention_value fwd', lambda: rpe_attention_value(attn, rel_idx, table),
         lambda: ext.rpe_attention_value_forward(attn, rel_idx, table, False, flag),
         lambda: rpe_attention_value_reference(attn, rel_idx, table)),
        ('rpe_attention_value fwd+bwd',
         forward_backward(lambda a, t: rpe_attention_value(a, rel_idx, t), attn, table), value_ext_bwd,
         forward_backward(lambda a, t: rpe_attention_value_reference(a, rel_idx, t), attn, table)),
        ('rpe_attention_bias fwd', lambda: rpe_attention_bias(bins, rel_idx),
         lambda: ext.rpe_attention_bias_forward(bins, rel_idx, flag),
         lambda: rpe_attention_bias_reference(bins, rel_idx)),
        ('rpe_attention_bias fwd+bwd', forward_backward(lambda b: rpe_attention_bias(b, rel_idx), bins),
         bias_ext_bwd, forward_backward(lambda b: rpe_attention_bias_reference(b, rel_idx), bins)),
        ('voxelize fwd', lambda: voxelize(coords), lambda: ext.voxelize(coords),
         lambda: voxelize_reference(coords)),
    ]


def us_per_call(fn, device, calls, repeats):
    """Median over ``repeats`` of the mean microseconds of ``calls`` calls of fn()."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    for _ in range(min(calls, 100)):  # warm-up
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--calls', type=int, default=2000)
    parser.add_argument('--repeats', type=int, default=7)
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    if ext_loader.load_ext() is None:
        parser.error('ikne_plugin._ext is not built: there is no extension call to time')
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'device: {name}; torch {torch.__version__}; us a call, median of {args.repeats} x {args.calls} calls')
    print(f'{"op":30s} {"wrapper":>9s} {"ext":>9s} {"ref":>9s} {"wrapper-ext":>12s}')
    for label, wrapper, extension, reference in cases(device):
        wrap, bare, ref = (us_per_call(fn, device, args.calls, args.repeats)
                           for fn in (wrapper, extension, reference))
        print(f'{label:30s} {wrap:9.1f} {bare:9.1f} {ref:9.1f} {wrap - bare:12.1f}')


if __name__ == '__main__':
    main()
