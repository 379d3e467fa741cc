"""Index ranges that only the data can break, checked by the kernels themselves.

A kernel skips an index outside its op's range and sets the op's flag: one int32 in host
memory (pinned for CUDA calls, so CUDA kernels write it directly), raised here as a
ValueError. CPU kernels have finished when they return, so their flag is read at once and the
error names the offending values. Waiting for each CUDA kernel to read its flag would stall
the host at every call (about ten times a training step) and keep it from queueing work ahead
of the GPU, so by default a CUDA call's flag is read later without waiting: at the next call
of any op, and by ``raise_flagged``, which the IKNE detector runs at the end of ``loss`` and
``predict`` (after their host synchronisations, so within the iteration that flagged). That
error names the op and the argument; for the values and the offending call, run with
``IKNE_SYNC_RANGE_CHECKS=1``, which makes every CUDA call wait and check as a CPU call does
(CUDA_LAUNCH_BLOCKING's idea).
"""
import os

import torch

from ._checks import check_index_range

SYNC_ENV = 'IKNE_SYNC_RANGE_CHECKS'
_flags = {}  # op name -> [host int32 flag [1], what a set flag means]


def op_flag(op, meaning, device):
    """The flag of ``op`` (zeroed at its first use) for its kernels on ``device`` to set: in
    pinned memory for CUDA (pinning initialises CUDA, which a CPU-only process, such as a
    forked data-loader worker, must not do). First raises any range error that earlier CUDA
    calls flagged (without waiting for the GPU)."""
    raise_flagged()
    entry = _flags.get(op)
    if entry is None or (device.type == 'cuda' and not entry[0].is_pinned()):
        entry = _flags[op] = [torch.zeros(1, dtype=torch.int32, pin_memory=device.type == 'cuda'), meaning]
    return entry[0]


def check_call(op, device, *ranges):
    """After a kernel of ``op`` on ``device`` that took the ``(name, index, low, high)``
    ``ranges``: on the CPU, or on CUDA with IKNE_SYNC_RANGE_CHECKS=1 (waiting for the
    kernel), raise the range error with the offending values; else leave the flag to
    ``raise_flagged``."""
    if device.type == 'cuda':
        if os.environ.get(SYNC_ENV, '0') in ('', '0') or torch.cuda.is_current_stream_capturing():
            return  # (a CUDA graph being captured cannot wait: its replays are checked later)
        torch.cuda.current_stream(device).synchronize()
    flag = _flags[op][0]
    if flag.item():
        flag.zero_()
        raise_range_error(op, *ranges)


def raise_range_error(op, *ranges):
    """Raise the error of a flag of ``op`` that its kernel has set: re-check the ``(name,
    index, low, high)`` ranges to say which values were out of range."""
    for name, index, low, high in ranges:
        check_index_range(name, index, low, high)
    raise RuntimeError(f'{op}: a kernel flagged values out of range in {[r[0] for r in ranges]}, '
                       'but a re-check found none')


def raise_flagged(wait=False):
    """Raise the range error of an op whose CUDA kernels flagged one since the last check;
    with ``wait``, first wait for the work queued on the GPUs."""
    if wait and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    for op, (flag, meaning) in _flags.items():
        if flag.item():
            flag.zero_()
            raise ValueError(f'{op}: {meaning}, in a CUDA call since the last check (CUDA kernels '
                             f'report this after the call; set {SYNC_ENV}=1 to stop at the call and '
                             'see the values)')
