"""ISBNet's point aggregator: ball-query neighbourhoods, a shared MLP, max pooling."""
import torch
from torch import nn

from ikne_plugin.ops import ball_query


class PointAggregator(nn.Module):
    """Feature of each centre = max over its ball-query neighbours of
    MLP([neighbour feature, (neighbour xyz - centre) / radius]).

    The MLP is Linear-LayerNorm-ReLU twice. Centres must be points of ``xyz`` (sampled from
    it), so every ball holds at least the centre itself.

    Args:
        in_channels: neighbour feature channels.
        out_channels: aggregated feature channels.
        radius: ball radius (same unit as the coordinates).
        num_neighbors: neighbours per ball (first found in point order, see ``ball_query``).
    """

    def __init__(self, in_channels: int, out_channels: int, radius: float, num_neighbors: int):
        super().__init__()
        self.radius = radius
        self.num_neighbors = num_neighbors
        self.mlp = nn.Sequential(
            nn.Linear(in_channels + 3, out_channels), nn.LayerNorm(out_channels), nn.ReLU(),
            nn.Linear(out_channels, out_channels), nn.LayerNorm(out_channels), nn.ReLU())

    def group(self, centers: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        """Neighbour indices [M, K] into ``xyz`` [N, 3] of ``centers`` [M, 3]."""
        return ball_query(centers.detach()[None], xyz.detach()[None], self.radius, self.num_neighbors)[0]

    def forward(self, centers: torch.Tensor, xyz: torch.Tensor, feats: torch.Tensor,
                idx: torch.Tensor) -> torch.Tensor:
        """Aggregated features [M, out_channels] of the neighbourhoods ``idx`` (from :meth:`group`)."""
        rel = (xyz[idx] - centers[:, None]) / self.radius
        return self.mlp(torch.cat([feats[idx], rel], -1)).max(1).values
