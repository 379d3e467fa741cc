"""GPU busy time of a piece of work, for the benchmarks: set against the wall time, it says
whether the GPU or the host (Python, launches, synchronisations) bounds the work; by kernel, it
says which kernel to work on."""
import torch


def gpu_time_by_kernel(fn, runs=1):
    """Mean GPU milliseconds a call of fn() spends in each of its kernels and copies (by name,
    longest first), over ``runs`` calls, by torch.profiler; None (with a note) where the
    profiler cannot see the GPU."""
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                fn()
            torch.cuda.synchronize()
    except RuntimeError as error:  # no CUPTI: the figure is missing, the others stand
        print(f'GPU busy time not measured: {error}')
        return None
    events = sorted(prof.key_averages(), key=lambda e: -e.self_device_time_total)
    return {e.key: e.self_device_time_total / 1e3 / runs for e in events if e.self_device_time_total > 0}


def gpu_busy_ms(fn, runs=1):
    """Mean over ``runs`` calls of fn() of the summed durations of its GPU work (kernels,
    copies); None where the profiler cannot see the GPU."""
    return total_ms(gpu_time_by_kernel(fn, runs))


def total_ms(kernels):
    """The GPU busy milliseconds of a ``gpu_time_by_kernel`` result (None stays None)."""
    return None if kernels is None else sum(kernels.values())
