"""Renaming MAFT's (and IKNE's released) state-dict entries to this implementation's names.

MAFT's model (dvlab-research/Mask-Attention-Free-Transformer, ``maft/model/maft.py``) holds the
backbone as ``input_conv``, ``unet``, ``output_layer`` and the transformer as ``decoder``; the
official IKNE release keeps those names. One function per part; :func:`maft_to_ikne_state_dict`
is their union (what ``tools/convert_checkpoint.py`` writes).
"""
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import torch

from ikne_plugin.utils.checkpoint import summarize_names

MAFT_BACKBONE_MODULES = ('input_conv', 'unet', 'output_layer')
# Where a checkpoint dict holds the state dict: gorilla's save_checkpoint (MAFT's and IKNE's
# trainers) writes {'meta', 'model', 'optimizer', 'scheduler'}; 'net' and 'state_dict' are
# the other common spellings.
STATE_DICT_KEYS = ('model', 'net', 'state_dict')
DDP_PREFIX = 'module.'


def _renamed(state_dict, rename):
    """``state_dict``'s entries ``k`` with ``rename(k)`` not None, named ``rename(k)``; torch's
    per-module ``_metadata`` (keyed by module path, '' for the root) is renamed alike."""
    out = OrderedDict((rename(k), v) for k, v in state_dict.items() if rename(k) is not None)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        out._metadata = OrderedDict((rename(k), v) for k, v in metadata.items()
                                    if rename(k) is not None)
    return out


def _select_and_rename(maft_state_dict, modules, prefix):
    """Entries (and torch's per-module ``_metadata``) under ``modules``, renamed ``prefix + name``."""
    return _renamed(maft_state_dict,
                    lambda name: prefix + name if name.split('.', 1)[0] in modules else None)


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
    criterion takes from its config: returns None for them (no head entry; see
    :func:`maft_to_ikne_state_dict`). Anything else is not a head entry: ValueError.
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


def maft_checkpoint_state_dict(checkpoint) -> Mapping[str, torch.Tensor]:
    """The state dict of a loaded MAFT/IKNE checkpoint: the checkpoint itself or its
    ``model``/``net``/``state_dict`` entry, without a DDP ``module.`` prefix (ValueError if
    there is none)."""
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping):
        state_dict = next((checkpoint[k] for k in STATE_DICT_KEYS if k in checkpoint), checkpoint)
    if not (isinstance(state_dict, Mapping) and state_dict
            and all(isinstance(v, torch.Tensor) for v in state_dict.values())):
        keys = list(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(f'no state dict (a dict of tensors, itself or under '
                         f'{", ".join(map(repr, STATE_DICT_KEYS))}) in this checkpoint: {keys}')
    if all(k.startswith(DDP_PREFIX) for k in state_dict):
        def unwrapped(name):  # metadata: 'module' is the model's root, '' the DDP wrapper
            if name == DDP_PREFIX[:-1]:
                return ''
            return name[len(DDP_PREFIX):] if name.startswith(DDP_PREFIX) else None
        state_dict = _renamed(state_dict, unwrapped)
    return state_dict


def _is_maft_entry(name: str) -> bool:
    """Whether ``name`` is a backbone, decoder or criterion entry of MAFT's model."""
    if name.split('.', 1)[0] in MAFT_BACKBONE_MODULES:
        return True
    try:
        maft_decoder_key_to_head_key(name)
        return True
    except ValueError:
        return False


def maft_to_ikne_state_dict(maft_state_dict: Mapping[str, torch.Tensor]
                            ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Every entry of a MAFT/IKNE state dict, for ``IKNE``: (state dict with our names, in the
    same layouts, with the backbone's spconv metadata; MAFT's ``criterion.*`` constants, which
    are not weights and which our criterion takes from its config). An entry of no known part
    is a ValueError that lists them."""
    unknown = [k for k in maft_state_dict if not _is_maft_entry(k)]
    if unknown:
        raise ValueError(f'{len(unknown)} of {len(maft_state_dict)} entries are not MAFT/IKNE '
                         f'model entries (names starting with {", ".join(MAFT_BACKBONE_MODULES)}, '
                         f'decoder or criterion): {summarize_names(unknown)}')
    state_dict = maft_backbone_state_dict(maft_state_dict)
    state_dict.update(maft_head_state_dict(maft_state_dict))
    constants = {k: v for k, v in maft_state_dict.items() if k.startswith('criterion.')}
    return state_dict, constants


def maft_criterion_constants(criterion) -> Dict[str, torch.Tensor]:
    """The ``criterion.*`` buffers MAFT's ``Criterion`` (maft/model/loss.py) would hold for the
    settings of our ``IKNECriterion`` ``criterion``: class weights, loss weights (class, mask
    BCE, mask Dice, centre, score) and matching cost weights (class, BCE, Dice, centre)."""
    loss_weights = [criterion.cls_weight, criterion.mask_bce_weight, criterion.mask_dice_weight,
                    criterion.center_weight, criterion.score_weight]
    m = criterion.matcher
    return {'criterion.class_weight': criterion.class_weights(torch.zeros(1)),
            'criterion.loss_weight': torch.tensor(loss_weights),
            'criterion.matcher.cost_weight': torch.tensor(
                [m.cls_cost, m.mask_bce_cost, m.mask_dice_cost, m.center_cost])}
