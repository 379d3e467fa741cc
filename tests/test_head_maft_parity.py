"""Parity of IKNETransformerHead with MAFT's query decoder, and MAFT's checkpoint names.

Fixture files: see tests/_maft_fixture.py (the decoder's and criterion's state-dict entries,
the decoder's superpoint inputs ``sp_feats`` [S, 16] / ``sp_coords`` [S, 3] and MAFT's
per-layer outputs; the names and shapes of MAFT's full ScanNet state dict).
"""
import pytest
import torch
from _maft_fixture import head_cfg, layer_errors, load, maft_full_state_dict_entries
from mmdet3d.registry import MODELS

from ikne_plugin.models.maft_compat import (maft_criterion_constants, maft_decoder_key_to_head_key,
                                            maft_head_state_dict)


@pytest.fixture(scope='module')
def maft():
    return load('maft_parity_fixture.pth')


def head_for(config, **extra):
    return MODELS.build(head_cfg(config, **extra))


def test_every_layer_matches_maft(maft):
    head = head_for(maft['config'])
    head.load_state_dict(maft_head_state_dict(maft['state_dict'], prefix=''), strict=True)
    head.eval()
    with torch.no_grad():
        out = head(dict(sp_feats=[maft['sp_feats']], sp_xyz=[maft['sp_coords']]))
    assert len(out['layers']) == 3
    worst = layer_errors(out['layers'], maft['per_layer'])
    # With these random weights no mask probability falls below 0.1, so MAFT's attention
    # masks are all open here; test_transformer_head tests the masking itself.
    print('\nMAFT parity, max |ours - MAFT| / max |MAFT| over 3 layers: '
          + ', '.join(f'{k} {v:.2e}' for k, v in worst.items()))
    assert max(worst.values()) <= 1e-3, worst


def test_criterion_constants_match_mafts_buffers(maft):
    """MAFT's criterion buffers are constants of its config: ours come from the head config."""
    criterion = head_for(maft['config'], criterion=dict(type='IKNECriterion')).criterion
    ours = maft_criterion_constants(criterion)
    theirs = {k: v for k, v in maft['state_dict'].items() if k.startswith('criterion.')}
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value)


def test_full_configuration_names_map_one_to_one():
    """Every decoder entry of MAFT's full ScanNet model maps onto our default head with its
    shape, and every entry of our head is covered; criterion entries map to None (dropped)."""
    entries = maft_full_state_dict_entries()
    head = MODELS.build(dict(type='IKNETransformerHead', in_channels=32))  # the full configuration
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    mapped = {}
    for name, shape, _ in entries:
        if name.startswith('criterion.'):
            assert maft_decoder_key_to_head_key(name) is None
        elif name.startswith('decoder.'):
            target = maft_decoder_key_to_head_key(name)
            assert target in ours, (name, target)
            assert ours[target] == tuple(shape), (name, ours[target], shape)
            mapped[target] = name
    assert set(mapped) == set(ours)
    assert len(mapped) == sum(n.startswith('decoder.') for n, _, _ in entries)
    assert ours['layers.0.relative_pos_value_table'] == (8, 32, 144)


def test_unknown_names_are_rejected(maft):
    with pytest.raises(ValueError, match='decoder'):
        maft_decoder_key_to_head_key('unet.blocks.block0.conv_branch.2.weight')
    with pytest.raises(ValueError, match='decoder'):
        maft_decoder_key_to_head_key('decoder.not_a_module.weight')
    with pytest.raises(ValueError, match="no MAFT decoder entries"):
        maft_head_state_dict({'unet.x': torch.zeros(1)})
    renamed = maft_head_state_dict(maft['state_dict'])
    assert all(k.startswith('head.') for k in renamed) and 'head.layers.0.ca_qpos_proj.weight' in renamed
