"""A call that waits for the GPU inside (e.g. ``torch.linalg.eigh``, which reads its error
code back to the host), run alongside the caller's own work instead of stalling it.

On CUDA the call starts at once in a worker thread on a side stream that first waits for
the work the caller has queued; ``result()`` joins it and makes the caller's stream wait for
the side stream, so what follows sees its outputs. Autograd records the side stream with its
operations and runs their backward there, synchronising the streams itself. Elsewhere the
call runs when ``result()`` asks for it (a CPU has no queue to keep full).
"""
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch


@functools.lru_cache(maxsize=None)
def _worker() -> ThreadPoolExecutor:
    """The one worker thread, started on first use."""
    return ThreadPoolExecutor(1, thread_name_prefix='ikne-background')


@functools.lru_cache(maxsize=None)
def _side_stream(device: torch.device) -> 'torch.cuda.Stream':
    return torch.cuda.Stream(device)


class BackgroundCall:
    """``fn(*args, **kwargs)`` started now on ``device`` (see the module docstring); its
    tensor result comes from ``result()``, which also re-raises the call's exception."""

    def __init__(self, device: torch.device, fn: Callable[..., torch.Tensor], *args, **kwargs):
        self._call = (fn, args, kwargs)  # the inputs stay referenced until the join
        self._future = None
        if device.type != 'cuda':
            return
        self._caller = torch.cuda.current_stream(device)
        self._side = _side_stream(device)
        grad_enabled = torch.is_grad_enabled()  # thread-local: the worker takes the caller's

        def run():
            with torch.cuda.stream(self._side), torch.set_grad_enabled(grad_enabled):
                self._side.wait_stream(self._caller)
                return fn(*args, **kwargs)

        self._future = _worker().submit(run)

    def result(self) -> torch.Tensor:
        fn, args, kwargs = self._call
        if self._future is None:
            return fn(*args, **kwargs)
        out = self._future.result()
        self._caller.wait_stream(self._side)
        out.record_stream(self._caller)  # made on the side stream, used on the caller's from now on
        return out
