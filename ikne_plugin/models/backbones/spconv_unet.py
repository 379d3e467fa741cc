"""The sparse-convolution U-Net of MAFT (and IKNE), with MAFT's module names.

Architecture from MAFT's model code (dvlab-research/Mask-Attention-Free-Transformer,
``maft/model/maft.py`` and ``blocks.py``; SPFormer's before it): input SubMConv3d k3; per level
``num_blocks`` pre-activation residual blocks, then BN-ReLU-SparseConv3d(k2, s2) down to the next
level, the next level, BN-ReLU-SparseInverseConv3d(k2) back up, the skip concatenated before the
upsampled features and residual blocks 2c -> c, c -> c; output BN-ReLU. BatchNorm eps 1e-4.
The attribute names reproduce MAFT's state-dict names exactly (``input_conv.0``, ``unet.u.u...``,
``blocks.block0.conv_branch.2``, ``i_branch``, ``conv``, ``deconv``, ``blocks_tail``,
``output_layer``), so MAFT/IKNE checkpoints load by a prefix.
"""
from collections import OrderedDict

import spconv.pytorch as spconv
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet3d.registry import MODELS

from ..spconv_compat import SparseConv3d, SparseInverseConv3d, SubMConv3d


class BatchNorm(nn.BatchNorm1d):
    """MAFT's norm (BatchNorm1d, eps 1e-4, momentum 0.1) that also takes a single voxel in training.

    A level of a scene of a few points can hold one voxel, where batch statistics do not exist
    (torch raises); that case is normalised with the running statistics, left unchanged.
    """

    def __init__(self, num_features):
        super().__init__(num_features, eps=1e-4)

    def forward(self, x):
        if self.training and len(x) <= 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, eps=self.eps)
        return super().forward(x)


class PreActResidualBlock(spconv.SparseModule):
    """BN-ReLU-SubMConv3d(k3) twice, plus the input (through a 1x1 SubMConv3d if channels change)."""

    def __init__(self, in_channels, out_channels, indice_key):
        super().__init__()
        if in_channels == out_channels:
            self.i_branch = spconv.SparseSequential(nn.Identity())
        else:
            self.i_branch = spconv.SparseSequential(
                SubMConv3d(in_channels, out_channels, kernel_size=1, bias=False))
        self.conv_branch = spconv.SparseSequential(
            BatchNorm(in_channels), nn.ReLU(inplace=True),
            SubMConv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False,
                       indice_key=indice_key),
            BatchNorm(out_channels), nn.ReLU(inplace=True),
            SubMConv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False,
                       indice_key=indice_key))

    def forward(self, x):
        out = self.conv_branch(x)
        return out.replace_feature(out.features + self.i_branch(x).features)


def residual_blocks(channels_in, channels, indice_key):
    """``block0``, ``block1``, ... mapping ``channels_in[i]`` to ``channels`` each."""
    return spconv.SparseSequential(OrderedDict(
        (f'block{i}', PreActResidualBlock(c_in, channels, indice_key))
        for i, c_in in enumerate(channels_in)))


class UNetLevel(nn.Module):
    """One level of the U-Net and, nested as ``u``, all levels below it."""

    def __init__(self, channels, num_blocks, level=1):
        super().__init__()
        c = channels[0]
        self.blocks = residual_blocks([c] * num_blocks, c, f'subm{level}')
        self.is_deepest = len(channels) == 1
        if self.is_deepest:
            return
        c_next = channels[1]
        self.conv = spconv.SparseSequential(
            BatchNorm(c), nn.ReLU(inplace=True),
            SparseConv3d(c, c_next, kernel_size=2, stride=2, bias=False,
                         indice_key=f'spconv{level}'))
        self.u = UNetLevel(channels[1:], num_blocks, level + 1)
        self.deconv = spconv.SparseSequential(
            BatchNorm(c_next), nn.ReLU(inplace=True),
            SparseInverseConv3d(c_next, c, kernel_size=2, bias=False,
                                indice_key=f'spconv{level}'))
        # MAFT's tail: first block 2c -> c (after the concat), the others c -> c
        self.blocks_tail = residual_blocks([2 * c] + [c] * (num_blocks - 1), c, f'subm{level}')

    def forward(self, x):
        skip = self.blocks(x)
        if self.is_deepest:
            return skip
        up = self.deconv(self.u(self.conv(skip)))
        return self.blocks_tail(skip.replace_feature(torch.cat([skip.features, up.features], 1)))


@MODELS.register_module()
class SpConvUNet(nn.Module):
    """Sparse U-Net over voxels: ``[M, in_channels]`` voxel features -> ``[M, channels[0]]``.

    Args:
        in_channels: input feature channels (6 = rgb + xyz, 9 with normals).
        channels: channels per level, finest first (MAFT: 32, 64, 96, 128, 160).
        num_blocks: residual blocks per level (MAFT: 2).
    """

    def __init__(self, in_channels=6, channels=(32, 64, 96, 128, 160), num_blocks=2):
        super().__init__()
        if not channels or num_blocks < 1:
            raise ValueError(f'SpConvUNet needs at least one level and one block per level, '
                             f'got channels={channels}, num_blocks={num_blocks}')
        self.in_channels = in_channels
        self.out_channels = channels[0]
        self.input_conv = spconv.SparseSequential(
            SubMConv3d(in_channels, channels[0], kernel_size=3, padding=1, bias=False,
                       indice_key='subm1'))
        self.unet = UNetLevel(list(channels), num_blocks)
        self.output_layer = spconv.SparseSequential(BatchNorm(channels[0]), nn.ReLU(inplace=True))

    def forward(self, voxel_feats, voxel_coords, spatial_shape, batch_size):
        """Run the U-Net.

        Args:
            voxel_feats: ``[M, in_channels]`` float features per voxel.
            voxel_coords: ``[M, 4]`` int32 (batch index, x, y, z) voxel indices, all distinct.
            spatial_shape: grid size per axis (3 ints), above every coordinate.
            batch_size: number of scenes.

        Returns:
            ``[M, out_channels]`` features, in the order of ``voxel_coords`` (float16 under
            CUDA autocast).
        """
        if voxel_feats.dim() != 2 or voxel_feats.shape[1] != self.in_channels:
            raise ValueError(f'SpConvUNet expects voxel features [M, {self.in_channels}], '
                             f'got {list(voxel_feats.shape)}')
        x = spconv.SparseConvTensor(voxel_feats, voxel_coords.int(), list(spatial_shape),
                                    batch_size)
        return self.output_layer(self.unet(self.input_conv(x))).features
