"""GPU busy time of a piece of work, for the benchmarks: set against the wall time, it says
whether the GPU or the host (Python, launches, synchronisations) bounds the work."""
import torch


def gpu_busy_ms(fn, runs=1):
    """Mean over ``runs`` calls of fn() of the summed durations of its GPU work (kernels,
    copies), by torch.profiler; None (with a note) where the profiler cannot see the GPU."""
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                fn()
            torch.cuda.synchronize()
    except RuntimeError as error:  # no CUPTI: the figure is missing, the others stand
        print(f'GPU busy time not measured: {error}')
        return None
    return sum(e.self_device_time_total for e in prof.key_averages()) / 1e3 / runs
