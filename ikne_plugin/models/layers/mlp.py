"""A plain multi-layer perceptron with ReLU between its linear layers."""
import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers (in -> hidden -> ... -> out), ReLU between them.

    The linear layers live in ``self.layers`` (MAFT's/DETR's ``MLP`` layout, so
    ``ref_point_head.layers.N`` and ``bbox_embed.layers.N`` checkpoints map 1:1).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int):
        super().__init__()
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
