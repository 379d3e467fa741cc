"""Random Fourier features of 3D coordinates (Tancik et al. 2020), as MAFT's decoder uses them."""
import math

import torch
from torch import nn


class FourierPositionEncoding(nn.Module):
    """Maps coordinates in [0, 1]^3 to ``[sin(2 pi x B), cos(2 pi x B)]``.

    ``gauss_B`` [in_dims, num_feats / 2] is a fixed N(0, scale^2) matrix kept as a
    buffer (MAFT's name and layout, so checkpoints load 1:1). The encoding carries no
    gradient to the coordinates: MAFT computes it under ``torch.no_grad``
    (maft/model/position_embedding.py), so the input is detached here.
    """

    def __init__(self, num_feats: int, in_dims: int = 3, gauss_scale: float = 1.0):
        super().__init__()
        if num_feats % 2:
            raise ValueError(f'num_feats must be even, got {num_feats}')
        self.register_buffer('gauss_B', torch.randn(in_dims, num_feats // 2) * gauss_scale)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz [..., in_dims] (normalised to [0, 1]) -> [..., num_feats]."""
        # Same operation order as MAFT (scale by 2 pi, then project) for bitwise-close parity.
        proj = (xyz.detach() * (2 * math.pi)) @ self.gauss_B.to(xyz.dtype)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)
