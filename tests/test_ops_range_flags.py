"""ikne_plugin.ops.range_flags: a range error that a CUDA kernel flags without the host waiting
is raised later, once, naming the op (simulated here by setting the flag as a kernel does)."""
import pytest
import torch

from ikne_plugin.ops import range_flags, voxel_pool, voxel_pool_reference


@pytest.fixture(autouse=True)
def fresh_flags(monkeypatch):
    monkeypatch.setattr(range_flags, '_flags', range_flags._Flags())


def test_flag_set_after_a_call_raises_at_the_next_call_once():
    feats, p2v = torch.rand(5, 2), torch.tensor([0, 1, 1, 2, 0])
    flag = range_flags.op_flag('some_op', 'idx has values outside [0, n)', feats)  # (a CPU call's)
    range_flags.raise_flagged(wait=True)  # nothing flagged: no error
    flag[0] = 1  # what a CUDA kernel of an earlier call writes into host memory
    with pytest.raises(ValueError, match=r'some_op: idx has values outside \[0, n\), in a CUDA call '
                       'since the last check.*IKNE_SYNC_RANGE_CHECKS=1'):
        voxel_pool(feats, p2v, 3)
    torch.testing.assert_close(voxel_pool(feats, p2v, 3), voxel_pool_reference(feats, p2v, 3))  # once


def test_cpu_calls_raise_at_once_with_the_values():
    with pytest.raises(ValueError, match=r'p2v must lie in \[0, 2\), got values in \[0, 5\]'):
        voxel_pool(torch.rand(3, 2), torch.tensor([0, 5, 1]), 2)
    range_flags.raise_flagged(wait=True)  # the CPU call reset its flag


def test_one_op_more_than_the_capacity_raises():
    for op in range(range_flags.CAPACITY):
        range_flags.op_flag(f'op{op}', 'idx has values outside [0, n)', torch.zeros(1))
    with pytest.raises(RuntimeError, match='holds the flags of .* ops; raise CAPACITY for one_more'):
        range_flags.op_flag('one_more', 'idx has values outside [0, n)', torch.zeros(1))
