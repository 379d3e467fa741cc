"""Parity of IKNETransformerHead with MAFT's query decoder, and MAFT's checkpoint names.

tests/data/maft_parity_fixture.pth is a slim copy of data/maft_parity/maft_parity_fixture.pth
(MAFT @4b5048c run on one GPU in eval mode, small configuration, random weights; see that
README): its ``decoder.*``/``criterion.*`` state-dict entries, ``config``, the superpoint
inputs ``sp_feats`` [S, 16] / ``sp_coords`` [S, 3] and MAFT's per-layer outputs.
tests/data/maft_full_state_dict_keys.json lists MAFT's state dict of the full ScanNet model.
"""
import json
from pathlib import Path

import pytest
import torch
from mmdet3d.registry import MODELS

from ikne_plugin.models.maft_compat import maft_decoder_key_to_head_key, maft_head_state_dict

DATA = Path(__file__).parent / 'data'


@pytest.fixture(scope='module')
def maft():
    return torch.load(DATA / 'maft_parity_fixture.pth', weights_only=False)


def head_for(config, **extra):
    """Our head with the sizes of MAFT's config (maft/model/query_decoder.py argument names)."""
    dec = config['decoder']
    return MODELS.build(dict(
        type='IKNETransformerHead', in_channels=config['media'], num_classes=config['num_class'],
        num_queries=dec['num_query'], num_layers=dec['num_layer'], d_model=dec['d_model'],
        num_heads=dec['nhead'], ffn_dim=dec['hidden_dim'],
        rpe_num_bins=2 * dec['quant_grid_length'],  # MAFT's quant_grid_length is the half range
        rpe_bin_size=dec['grid_size'], attn_mask_thr=dec['attn_mask_thresh'], **extra))


def test_every_layer_matches_maft(maft):
    head = head_for(maft['config'])
    head.load_state_dict(maft_head_state_dict(maft['state_dict'], prefix=''), strict=True)
    head.eval()
    with torch.no_grad():
        out = head(dict(sp_feats=[maft['sp_feats']], sp_xyz=[maft['sp_coords']]))
    assert len(out['layers']) == len(maft['per_layer']) == 3
    worst = {}
    for i, (ours, ref) in enumerate(zip(out['layers'], maft['per_layer'])):
        pairs = dict(labels=ours['cls_logits'][0], scores=ours['scores'][0], centers=ours['centers'][0],
                     masks=ours['mask_logits'][0])
        for key, value in pairs.items():
            assert value.shape == ref[key].shape, (i, key)
            rel = ((value - ref[key]).abs().max() / ref[key].abs().max()).item()
            worst[key] = max(worst.get(key, 0.0), rel)
    # With these random weights no mask probability falls below 0.1, so MAFT's attention
    # masks are all open here; test_transformer_head tests the masking itself.
    print('\nMAFT parity, max |ours - MAFT| / max |MAFT| over 3 layers: '
          + ', '.join(f'{k} {v:.2e}' for k, v in worst.items()))
    assert max(worst.values()) <= 1e-3, worst


def test_criterion_constants_match_mafts_buffers(maft):
    """MAFT's criterion buffers are constants of its config: ours come from the head config."""
    criterion = head_for(maft['config'], criterion=dict(type='IKNECriterion')).criterion
    sd = maft['state_dict']
    torch.testing.assert_close(criterion.class_weights(torch.zeros(1)), sd['criterion.class_weight'])
    ours = [criterion.cls_weight, criterion.mask_bce_weight, criterion.mask_dice_weight, criterion.center_weight,
            criterion.score_weight]
    torch.testing.assert_close(torch.tensor(ours), sd['criterion.loss_weight'])
    m = criterion.matcher
    costs = [m.cls_cost, m.mask_bce_cost, m.mask_dice_cost, m.center_cost]
    torch.testing.assert_close(torch.tensor(costs), sd['criterion.matcher.cost_weight'])


def test_full_configuration_names_map_one_to_one():
    """Every decoder entry of MAFT's full ScanNet model maps onto our default head with its
    shape, and every entry of our head is covered; criterion entries map to None (dropped)."""
    entries = json.loads((DATA / 'maft_full_state_dict_keys.json').read_text())
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
