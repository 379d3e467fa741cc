"""Renaming MAFT's (and IKNE's released) state-dict entries to this implementation's names.

MAFT's model (dvlab-research/Mask-Attention-Free-Transformer, ``maft/model/maft.py``) holds the
backbone as ``input_conv``, ``unet``, ``output_layer`` and the transformer as ``decoder``; the
official IKNE release keeps those names. One function per part, so a checkpoint converter is
their union.
"""
from collections import OrderedDict

MAFT_BACKBONE_MODULES = ('input_conv', 'unet', 'output_layer')


def _select_and_rename(maft_state_dict, modules, prefix):
    """Entries (and torch's per-module ``_metadata``) under ``modules``, renamed ``prefix + name``."""
    def wanted(name):
        return name.split('.', 1)[0] in modules

    renamed = OrderedDict((prefix + k, v) for k, v in maft_state_dict.items() if wanted(k))
    metadata = getattr(maft_state_dict, '_metadata', None)
    if metadata is not None:
        renamed._metadata = OrderedDict(
            (prefix + k, v) for k, v in metadata.items() if wanted(k))
    return renamed


def maft_backbone_state_dict(maft_state_dict, prefix='backbone.'):
    """MAFT's backbone entries, named for ``IKNE`` (``backbone.`` + MAFT's name; MAFT's names are
    ``SpConvUNet``'s own, so ``prefix=''`` loads straight into a ``SpConvUNet``)."""
    renamed = _select_and_rename(maft_state_dict, MAFT_BACKBONE_MODULES, prefix)
    if not renamed:
        raise ValueError(f'no MAFT backbone entries (names starting with '
                         f'{", ".join(MAFT_BACKBONE_MODULES)}) in this state dict; '
                         f'first names: {list(maft_state_dict)[:5]}')
    return renamed
