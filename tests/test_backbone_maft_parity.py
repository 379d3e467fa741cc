"""Parity with MAFT's released model code: voxelisation and superpoint features of one scene.

tests/data/maft_backbone_weights.pth and maft_parity_scene.pth are slices of
data/maft_parity/maft_parity_fixture.pth (MAFT @4b5048c, small configuration, random weights,
eval mode; see that README): MAFT's backbone weights with their spconv metadata (version 1),
the scene, MAFT's voxelisation of it and its backbone output pooled per superpoint.
"""
from pathlib import Path

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn as nn
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData

import ikne_plugin.models  # noqa: F401  (registers IKNE, SpConvUNet and the heads)
from ikne_plugin.models.maft_compat import maft_backbone_state_dict

DATA = Path(__file__).parent / 'data'


@pytest.fixture(scope='module')
def maft():
    weights = torch.load(DATA / 'maft_backbone_weights.pth')
    scene = torch.load(DATA / 'maft_parity_scene.pth')
    return weights, scene


def build_small_ikne(config):
    """IKNE with the backbone of MAFT's small configuration."""
    # MAFT (maft/model/maft.py): level channels = media * (i + 1) for i in range(blocks)
    channels = [config['media'] * (i + 1) for i in range(config['blocks'])]
    backbone = dict(type='SpConvUNet', in_channels=config['input_channel'], channels=channels,
                    num_blocks=config['block_reps'])
    head = dict(type='IKNETransformerHead', in_channels=channels[0], num_classes=18,
                d_model=64, num_heads=4, ffn_dim=128, num_layers=3, num_queries=24)
    return MODELS.build(dict(type='IKNE', backbone=backbone, head=head, voxel_size=0.02,
                             pool=config['pool'], with_normals=False)).eval()


def scene_inputs(scene):
    """MAFT's scene as our pipeline packs it: points (x, y, z, r, g, b) and superpoint ids."""
    feats = scene['feats']  # rgb in [-1, 1], then xyz in metres
    points = torch.cat([feats[:, 3:6], feats[:, :3]], 1)
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(sp_pts_mask=scene['superpoints'].long())
    return points, sample


def test_voxelisation_reproduces_mafts(maft):
    _, scene = maft
    model = build_small_ikne(maft[0]['config'])
    points, _ = scene_inputs(scene)
    voxel_coords, p2v, spatial_shape = model.voxelize_points(
        points[:, :3], torch.zeros(len(points), dtype=torch.long), 1)
    maft_coords = scene['voxel_coords'].long()
    assert len(voxel_coords) == len(maft_coords)
    # the same integer voxel for every point, i.e. the same voxels up to their order
    assert torch.equal(voxel_coords[p2v].long(), maft_coords[scene['p2v_map'].long()])
    assert spatial_shape == scene['spatial_shape'].tolist()


@pytest.mark.parametrize('mmdet3d_patch', [True, False], ids=['mmdet3d-patched', 'unpatched'])
def test_superpoint_features_match_mafts(maft, mmdet3d_patch, monkeypatch):
    """MAFT's weights load through the name mapping, whether or not mmdet3d's spconv patch is
    active, and the detector's superpoint features equal MAFT's."""
    weights, scene = maft
    patched = spconv.SparseModule._load_from_state_dict
    assert patched is not nn.Module._load_from_state_dict  # importing mmdet3d.models patched it
    if not mmdet3d_patch:
        monkeypatch.setattr(spconv.SparseModule, '_load_from_state_dict',
                            nn.Module._load_from_state_dict)
    model = build_small_ikne(weights['config'])
    state_dict = maft_backbone_state_dict(weights['state_dict'])
    assert {m['version'] for k, m in state_dict._metadata.items() if k.endswith('input_conv.0')} == {1}
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert unexpected == [] and all(k.startswith('head.') for k in missing)

    points, sample = scene_inputs(scene)
    with torch.no_grad():
        sp_feats = model.extract_feat(dict(points=[points]), [sample])['sp_feats'][0]
    expected = weights['sp_feats']
    error = (sp_feats - expected).abs().max() / expected.abs().max()
    print(f'max |ours - MAFT| / max |MAFT| = {error:.2e}')
    assert sp_feats.shape == expected.shape
    assert error <= 1e-4


def test_plain_spconv_would_scramble_mafts_weights(maft):
    """The trap our convolutions avoid: spconv's own class, under mmdet3d's patch, permutes
    MAFT's version-1 weights (refused for their shape here)."""
    weights, _ = maft
    conv = spconv.SubMConv3d(6, 16, kernel_size=3, padding=1, bias=False)
    state_dict = {'weight': weights['state_dict']['input_conv.0.weight']}
    with pytest.raises(RuntimeError, match='size mismatch'):
        conv.load_state_dict(state_dict)
