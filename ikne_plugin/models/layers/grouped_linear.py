"""Several linear layers of one input as one matrix product."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def grouped_linear(x: torch.Tensor, linears: Sequence[nn.Linear]) -> Tuple[torch.Tensor, ...]:
    """``tuple(linear(x) for linear in linears)`` as one product with the weights concatenated.

    On the GPU the decoder is bound by the host's cost per operator, and a linear layer's
    backward is its costliest autograd node (three kernels): one product and one node serve the
    whole group, for the price of concatenating the weights. The outputs are views of one tensor.
    """
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias for linear in linears])
    return F.linear(x, weight, bias).split([linear.out_features for linear in linears], -1)
