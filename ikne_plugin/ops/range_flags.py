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

The flags of all ops share one array, which the host reads through a memoryview (no torch
dispatch: every op call reads them all); once pinned it is never replaced, as the CUDA graphs
captured with its addresses need.
"""
import os

import torch

from ._checks import check_index_range

SYNC_ENV = 'IKNE_SYNC_RANGE_CHECKS'
CAPACITY = 8  # flags in the array: more than the ops that take one


class _Flags:
    """The ops' flags: per op name, the index of its flag and what a set flag means; the
    CAPACITY flags as int32 [1] views of one array, for the kernels, and as a memoryview of
    it, for the host."""

    def __init__(self):
        self.ops = {}
        self._hold(torch.zeros(CAPACITY, dtype=torch.int32), pinned=False)

    def _hold(self, array, pinned):
        self.array, self.pinned, self.values = array, pinned, memoryview(array.numpy())
        self.views = [array[i:i + 1] for i in range(CAPACITY)]

    def pin(self):
        """Move the flags to pinned memory (pinning initialises CUDA, which a CPU-only process,
        such as a forked data-loader worker, must not do)."""
        self._hold(self.array.pin_memory(), pinned=True)


_flags = _Flags()


def op_flag(op, meaning, tensor):
    """The flag of ``op`` (zeroed at its first use) for its kernels on the device of ``tensor``
    to set: in pinned memory for CUDA. First raises any range error that earlier CUDA calls
    flagged (without waiting for the GPU)."""
    raise_flagged()
    entry = _flags.ops.get(op)
    if entry is None:
        if len(_flags.ops) == CAPACITY:
            raise RuntimeError(f'range_flags holds the flags of {CAPACITY} ops; raise CAPACITY for {op}')
        entry = _flags.ops[op] = (len(_flags.ops), meaning)
    if tensor.is_cuda and not _flags.pinned:
        _flags.pin()
    return _flags.views[entry[0]]


def check_call(op, tensor, *ranges):
    """After a kernel of ``op`` on the device of ``tensor`` that took the ``(name, index, low,
    high)`` ``ranges``: on the CPU, or on CUDA with IKNE_SYNC_RANGE_CHECKS=1 (waiting for the
    kernel), raise the range error with the offending values; else leave the flag to
    ``raise_flagged``."""
    if tensor.is_cuda:
        if os.environ.get(SYNC_ENV, '0') in ('', '0') or torch.cuda.is_current_stream_capturing():
            return  # (a CUDA graph being captured cannot wait: its replays are checked later)
        torch.cuda.current_stream(tensor.device).synchronize()
    index = _flags.ops[op][0]
    if _flags.values[index]:
        _flags.values[index] = 0
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
    for op, (index, meaning) in _flags.ops.items():
        if _flags.values[index]:
            _flags.values[index] = 0
            raise ValueError(f'{op}: {meaning}, in a CUDA call since the last check (CUDA kernels '
                             f'report this after the call; set {SYNC_ENV}=1 to stop at the call and '
                             'see the values)')
