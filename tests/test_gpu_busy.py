"""utils.gpu_busy: the GPU time of a call by kernel, and its sum, from torch.profiler's events
(a stand-in profiler here: the CPU has no GPU to profile)."""
from types import SimpleNamespace

import pytest
import torch

from ikne_plugin.utils import gpu_busy_ms, gpu_time_by_kernel


class FakeProfile:
    """torch.profiler.profile's context manager, with fixed events (self device time in us)."""

    def __init__(self, events, error=None):
        self.events, self.error = events, error

    def __call__(self, activities):
        if self.error:
            raise self.error
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def key_averages(self):
        return [SimpleNamespace(key=key, self_device_time_total=us) for key, us in self.events]


@pytest.fixture
def profile(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: None)

    def use(events, error=None):
        monkeypatch.setattr(torch.profiler, 'profile', FakeProfile(events, error))
    return use


def test_time_by_kernel_is_per_call_longest_first_without_host_events(profile):
    profile([('cudaLaunchKernel', 0.0), ('gather', 300.0), ('histogram', 900.0), ('fill', 30.0)])
    calls = []
    kernels = gpu_time_by_kernel(lambda: calls.append(1), runs=3)
    assert len(calls) == 3
    assert list(kernels) == ['histogram', 'gather', 'fill']
    assert kernels == pytest.approx({'histogram': 0.3, 'gather': 0.1, 'fill': 0.01})  # ms a call
    assert gpu_busy_ms(lambda: None, runs=3) == pytest.approx(0.41)


def test_no_profiler_gives_none(profile, capsys):
    profile([], error=RuntimeError('CUPTI unavailable'))
    assert gpu_time_by_kernel(lambda: None) is None
    assert gpu_busy_ms(lambda: None) is None
    assert 'GPU busy time not measured: CUPTI unavailable' in capsys.readouterr().out
