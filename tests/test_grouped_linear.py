"""grouped_linear: one product for several linear layers of one input, against the layers."""
import torch
from torch import nn

from ikne_plugin.models.layers import grouped_linear


def test_matches_the_layers_outputs_and_gradients():
    torch.manual_seed(0)
    linears = [nn.Linear(5, n).double() for n in (3, 7, 2)]
    x = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    outs = [grouped_linear(x, linears), [linear(x) for linear in linears]]
    weights = [torch.randn_like(o) for o in outs[1]]  # a loss that weighs every output differently
    grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights)),
                                 [x, *(p for linear in linears for p in linear.parameters())])
             for out in outs]
    torch.testing.assert_close(outs[0], tuple(outs[1]))
    torch.testing.assert_close(grads[0], grads[1])
