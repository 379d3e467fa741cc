"""MAFT's reference outputs in tests/data and our model of the same small configuration.

The files are slices of ../shared/data/maft_parity/maft_parity_fixture.pth (MAFT @4b5048c run on
one GPU in eval mode, small configuration, random weights, one synthetic scene; see that README):
- maft_backbone_weights.pth: ``config``, the backbone's state dict with its spconv metadata
  (version 1) and ``sp_feats``, the backbone output pooled per superpoint;
- maft_parity_scene.pth: the scene (``feats``, ``superpoints``) and MAFT's voxelisation of it;
- maft_parity_fixture.pth: ``config``, the ``decoder.*``/``criterion.*`` entries, the decoder's
  inputs ``sp_feats``/``sp_coords`` and its outputs ``per_layer``;
- maft_full_state_dict_keys.json: [name, shape, dtype] of MAFT's full ScanNet state dict.
"""
import json
from collections import OrderedDict
from pathlib import Path

import torch
from mmdet3d.structures import Det3DDataSample, PointData

DATA = Path(__file__).parent / 'data'
# our head output key -> MAFT's per_layer key
LAYER_OUTPUTS = dict(cls_logits='labels', scores='scores', centers='centers', mask_logits='masks')


def load(name):
    return torch.load(DATA / name, weights_only=True)


def maft_full_state_dict_entries():
    """[name, shape, dtype] of every entry of MAFT's full ScanNet model."""
    return json.loads((DATA / 'maft_full_state_dict_keys.json').read_text())


def maft_state_dict():
    """MAFT's whole state dict of the small configuration, as MAFT saves it (the backbone's
    torch ``_metadata`` included)."""
    backbone = load('maft_backbone_weights.pth')['state_dict']
    state_dict = OrderedDict(backbone)
    state_dict.update(load('maft_parity_fixture.pth')['state_dict'])
    state_dict._metadata = backbone._metadata
    return state_dict


def head_cfg(config, **extra):
    """Our head with the sizes of MAFT's config (maft/model/query_decoder.py argument names)."""
    dec = config['decoder']
    return dict(
        type='IKNETransformerHead', in_channels=config['media'], num_classes=config['num_class'],
        num_queries=dec['num_query'], num_layers=dec['num_layer'], d_model=dec['d_model'],
        num_heads=dec['nhead'], ffn_dim=dec['hidden_dim'],
        rpe_num_bins=2 * dec['quant_grid_length'],  # MAFT's quant_grid_length is the half range
        rpe_bin_size=dec['grid_size'], attn_mask_thr=dec['attn_mask_thresh'], **extra)


def ikne_cfg(config):
    """``IKNE`` with MAFT's configuration ``config`` (maft/model/maft.py argument names)."""
    # MAFT: level channels = media * (i + 1) for i in range(blocks)
    channels = [config['media'] * (i + 1) for i in range(config['blocks'])]
    backbone = dict(type='SpConvUNet', in_channels=config['input_channel'], channels=channels,
                    num_blocks=config['block_reps'])
    return dict(type='IKNE', backbone=backbone, head=head_cfg(config), voxel_size=0.02,
                pool=config['pool'], with_normals=False)


def scene_inputs(scene):
    """MAFT's scene as our pipeline packs it: points (x, y, z, r, g, b) and superpoint ids."""
    feats = scene['feats']  # rgb in [-1, 1], then xyz in metres
    points = torch.cat([feats[:, 3:6], feats[:, :3]], 1)
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(sp_pts_mask=scene['superpoints'].long())
    return dict(points=[points]), [sample]


def relative_error(ours, ref):
    """max |ours - ref| / max |ref| (shapes must agree)."""
    assert ours.shape == ref.shape, (tuple(ours.shape), tuple(ref.shape))
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def layer_errors(layers, per_layer):
    """Worst relative error of each output over the decoder layers, our head's ``layers``
    (first scene) against MAFT's ``per_layer``."""
    assert len(layers) == len(per_layer)
    return {maft_key: max(relative_error(ours[key][0], ref[maft_key])
                          for ours, ref in zip(layers, per_layer))
            for key, maft_key in LAYER_OUTPUTS.items()}


def model_errors(model):
    """Run ``model`` (MAFT's weights loaded) on the scene: relative errors of the superpoint
    features and of every decoder layer's outputs against MAFT's."""
    inputs, samples = scene_inputs(load('maft_parity_scene.pth'))
    with torch.no_grad():
        x = model.eval().extract_feat(inputs, samples)
        layers = model.head(x)['layers']
    errors = dict(sp_feats=relative_error(x['sp_feats'][0], load('maft_backbone_weights.pth')['sp_feats']))
    errors.update(layer_errors(layers, load('maft_parity_fixture.pth')['per_layer']))
    return errors
