"""BackgroundCall: deferred on the CPU; on CUDA a worker thread on a side stream whose results,
gradients and errors reach the caller as a direct call's would."""
import pytest
import torch

from ikne_plugin.utils import BackgroundCall

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def gram_eigh_top(x):
    """A call that waits for the GPU inside (eigh reads its error code back to the host)."""
    evecs = torch.linalg.eigh(x.mT @ x)[1][..., -2:]
    return (x @ evecs).square().sum()


def test_cpu_call_runs_at_result():
    calls = []
    call = BackgroundCall(torch.device('cpu'), lambda a, b=0: calls.append(1) or a + b, torch.ones(2), b=1)
    assert calls == []
    assert torch.equal(call.result(), torch.full((2, ), 2.0)) and calls == [1]


def test_cpu_call_raises_at_result():
    def fails():
        raise ValueError('bad input')
    call = BackgroundCall(torch.device('cpu'), fails)
    with pytest.raises(ValueError, match='bad input'):
        call.result()


@needs_cuda
def test_cuda_result_and_gradient_equal_a_direct_call():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 32, generator=g, dtype=torch.float64).cuda().requires_grad_()
    y = x * 2  # queued on the caller's stream just before: the side stream must wait for it
    direct = gram_eigh_top(y)
    (grad_direct, ) = torch.autograd.grad(direct, x)
    y = x * 2
    background = BackgroundCall(x.device, gram_eigh_top, y)
    filler = torch.randn(2048, 2048, device='cuda') @ torch.randn(2048, 2048, device='cuda')  # caller's work
    out = background.result() + 0 * filler.sum()
    torch.testing.assert_close(out, direct)
    (grad, ) = torch.autograd.grad(out, x)
    torch.testing.assert_close(grad, grad_direct)


@needs_cuda
def test_cuda_call_takes_the_callers_grad_mode_and_raises_at_result():
    x = torch.randn(8, 4, device='cuda', requires_grad=True)
    with torch.no_grad():
        assert not BackgroundCall(x.device, gram_eigh_top, x).result().requires_grad
    assert BackgroundCall(x.device, gram_eigh_top, x).result().requires_grad
    with pytest.raises(RuntimeError, match='1-D'):
        BackgroundCall(x.device, gram_eigh_top, x[0]).result()  # a vector has no .mT
