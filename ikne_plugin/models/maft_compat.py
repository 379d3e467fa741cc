"""Renaming MAFT's (and IKNE's released) state-dict entries to this implementation's names.

MAFT's model (dvlab-research/Mask-Attention-Free-Transformer, ``maft/model/maft.py``) holds the
backbone as ``input_conv``, ``unet``, ``output_layer`` and the transformer as ``decoder``; the
official IKNE release keeps those names. One function per part, so a checkpoint converter is
their union.
"""
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

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


# MAFT state-dict prefix -> our parameter prefix (longest MAFT prefixes first).
_MAFT_DECODER_PREFIXES = (
    ('decoder.decoder.layers.', 'layers.'),
    ('decoder.decoder.norm.', 'output_norm.'),
    ('decoder.decoder.position_embedding.', 'query_pos_encoding.'),
    ('decoder.decoder.ref_point_head.', 'query_pos_mlp.'),
    ('decoder.decoder.bbox_embed.', 'center_refine_mlp.'),
    ('decoder.input_proj.', 'input_proj.'),
    ('decoder.refpoint_embed.', 'query_ref_points.'),
    ('decoder.key_position_embedding.', 'key_pos_encoding.'),
    ('decoder.out_cls.', 'cls_head.'),
    ('decoder.out_score.', 'score_head.'),
    ('decoder.out_bbox.', 'center_head.'),
    ('decoder.x_mask.', 'mask_feat_proj.'),
)


def maft_decoder_key_to_head_key(name: str) -> Optional[str]:
    """Name in ``IKNETransformerHead`` of a MAFT/IKNE checkpoint entry.

    ``decoder.X`` entries map to head parameters/buffers of the same shape (the RPE
    tables keep MAFT's ``[heads, head_dim, 3 * bins]`` layout). ``criterion.*`` entries
    (``class_weight``, ``loss_weight``, ``matcher.cost_weight``) are constants that our
    criterion takes from its config: returns None for them (drop). Anything else is not
    a head entry: ValueError.
    """
    if name.startswith('criterion.'):
        return None
    for maft_prefix, head_prefix in _MAFT_DECODER_PREFIXES:
        if name.startswith(maft_prefix):
            return head_prefix + name[len(maft_prefix):]
    raise ValueError(f"{name!r} is not a MAFT decoder or criterion entry (expected 'decoder.*' or 'criterion.*')")


def maft_head_state_dict(maft_state_dict: Mapping[str, torch.Tensor], prefix: str = 'head.') -> Dict[str, torch.Tensor]:
    """MAFT's ``decoder.*`` entries renamed ``prefix`` + our name (``criterion.*`` dropped,
    other entries ignored): loads into an ``IKNETransformerHead`` of the same sizes
    (``prefix=''``) or into ``IKNE`` (``'head.'``)."""
    renamed = {prefix + maft_decoder_key_to_head_key(k): v for k, v in maft_state_dict.items()
               if k.startswith('decoder.')}
    if not renamed:
        raise ValueError(f"no MAFT decoder entries (names starting with 'decoder.') in this state dict; "
                         f'first names: {list(maft_state_dict)[:5]}')
    return renamed
