"""A call that waits for the GPU inside (e.g. ``torch.linalg.eigh``, which reads its error
code back to the host), run alongside the caller's own work instead of stalling it.

On CUDA the call starts at once in a worker thread on a side stream that first waits for
the work the caller has queued; ``result()`` joins it and makes the caller's stream wait for
the side stream, so what follows sees its outputs. Autograd records the side stream with its
operations and runs their backward there, synchronising the streams itself. Elsewhere the
call runs when ``result()`` asks for it (a CPU has no queue to keep full).
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict

import torch

_workers: Dict[str, ThreadPoolExecutor] = {}  # one thread, started on first use
_side_streams: Dict[torch.device, 'torch.cuda.Stream'] = {}


class BackgroundCall:
    """``fn(*args, **kwargs)`` started now on ``device`` (see the module docstring); its
    tensor result comes from ``result()``, which also re-raises the call's exception."""

    def __init__(self, device: torch.device, fn: Callable[..., torch.Tensor], *args, **kwargs):
        self._call = (fn, args, kwargs)  # the inputs stay referenced until the join
        self._future = None
        if device.type != 'cuda':
            return
        self._caller = torch.cuda.current_stream(device)
        if device not in _side_streams:
            _side_streams[device] = torch.cuda.Stream(device)
        self._side = _side_streams[device]
        grad_enabled = torch.is_grad_enabled()  # thread-local: the worker takes the caller's

        def run():
            with torch.cuda.stream(self._side), torch.set_grad_enabled(grad_enabled):
                self._side.wait_stream(self._caller)
                return fn(*args, **kwargs)

        if 'worker' not in _workers:
            _workers['worker'] = ThreadPoolExecutor(1, thread_name_prefix='ikne-background')
        self._future = _workers['worker'].submit(run)

    def result(self) -> torch.Tensor:
        fn, args, kwargs = self._call
        if self._future is None:
            return fn(*args, **kwargs)
        out = self._future.result()
        self._caller.wait_stream(self._side)
        out.record_stream(self._caller)  # made on the side stream, used on the caller's from now on
        return out
