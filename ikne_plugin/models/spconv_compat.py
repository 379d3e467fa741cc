"""spconv 2 convolutions that load their own weights whatever mmdet3d patched, and run on any device.

Three fixes over ``spconv.pytorch``'s classes; names and weights are unchanged:

- Loading. Importing ``mmdet3d.models`` replaces ``SparseModule._load_from_state_dict`` with a
  version that permutes the weight of every module whose state-dict metadata ``version`` is not 2
  (a spconv 1 -> 2 layout conversion; mmdet3d 1.4.0,
  ``mmdet3d/models/layers/spconv/overwrite_spconv/write_spconv2.py``). spconv 2 itself saves
  version 1 (MAFT's and IKNE's released checkpoints do), and a plain dict has no metadata at all,
  so in such a process those weights would be scrambled or refused. Every checkpoint we load
  holds spconv 2's layout ``[out, k, k, k, in]``, so these classes always load it as stored
  (torch's own loading, spconv's layout pre-hook included) and save version 2, which the patched
  loader also reads as is.
- Algorithm. spconv's default implicit-GEMM algorithm needs CUDA; ``ConvAlgo.Native`` works on
  both devices. The algorithm is chosen from the input's device at each forward, so a model built
  on one device and moved to another works.
- Autocast. In eval mode under CUDA autocast the convolutions run in float16, as spconv's
  training path does under autocast (its inference path ignored autocast).
"""
import spconv.pytorch as spconv
import torch
import torch.nn as nn
from spconv.core import ConvAlgo

__all__ = ['SubMConv3d', 'SparseConv3d', 'SparseInverseConv3d']


class _PortableSparseConv:
    """Mixin for a spconv convolution class: layout-stable loading, device-aware algorithm."""

    _version = 2  # spconv 2 layout; read as is by mmdet3d's patched loader too

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cuda_algo = self.algo  # spconv's choice for CUDA inputs

    def _load_from_state_dict(self, *args, **kwargs):
        nn.Module._load_from_state_dict(self, *args, **kwargs)

    def forward(self, input):
        self.algo = self.cuda_algo if input.features.is_cuda else ConvAlgo.Native
        if self.training or not (input.features.is_cuda and torch.is_autocast_enabled('cuda')):
            return super().forward(input)
        # Under CUDA autocast spconv's training path casts features and weights to float16 (its
        # autograd Functions); its inference path ignores autocast and ran float32 kernels
        # (profiled on an H200). Run it in float16 too, with spconv's forward's arguments.
        bias = None if self.bias is None else self.bias.half()
        return self._conv_forward(False, input.replace_feature(input.features.half()),
                                  self.weight.half(), bias, name=self.name,
                                  sparse_unique_name=self._sparse_unique_name,
                                  act_type=self.act_type, act_alpha=self.act_alpha,
                                  act_beta=self.act_beta)


class SubMConv3d(_PortableSparseConv, spconv.SubMConv3d):
    """spconv's submanifold convolution with the fixes above."""


class SparseConv3d(_PortableSparseConv, spconv.SparseConv3d):
    """spconv's strided sparse convolution with the fixes above."""


class SparseInverseConv3d(_PortableSparseConv, spconv.SparseInverseConv3d):
    """spconv's inverse of a ``SparseConv3d`` (same ``indice_key``) with the fixes above."""
