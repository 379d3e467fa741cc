"""tools/benchmark_ops.py: runs on the CPU, and --ops selects the benchmarks it runs."""
import json

import pytest

from _tools import one_thread, run_tool  # noqa: F401 (fixture: one torch thread)

from ikne_plugin.ops.ext_loader import load_ext


@pytest.mark.skipif(load_ext() is None, reason='the benchmark compares the built extension with its reference')
def test_runs_the_selected_ops_on_the_cpu(tmp_path):
    out = tmp_path / 'ops.json'
    run_tool('benchmark_ops', '--ops', 'voxel_pool', '--repeats', '1', '--json', out)
    rows = json.loads(out.read_text())['results']
    assert [row['op'].split(' C=')[0] for row in rows] == ['voxel_pool mean'] * 2 + ['voxel_pool max'] * 2
    for row in rows:
        assert row['ext_ms'] > 0 and row['ref_ms'] > 0
        assert row['speedup'] == pytest.approx(row['ref_ms'] / row['ext_ms'])
        assert row['ext_gpu_ms'] is None and row['mem_ratio'] is None  # GPU columns: CUDA only


def test_rejects_an_unknown_op():
    with pytest.raises(SystemExit) as exit_info:
        run_tool('benchmark_ops', '--ops', 'segment')
    assert exit_info.value.code == 2  # argparse's usage error, naming the valid choices


def test_kernels_is_cuda_only():
    with pytest.raises(SystemExit) as exit_info:
        run_tool('benchmark_ops', '--ops', 'voxel_pool', '--kernels', '3')
    assert exit_info.value.code == 2
