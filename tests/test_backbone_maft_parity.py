"""Parity with MAFT's released model code: voxelisation and superpoint features of one scene.

Fixture files: see tests/_maft_fixture.py (MAFT's backbone weights with their spconv metadata,
version 1, the scene, MAFT's voxelisation of it and its backbone output pooled per superpoint).
"""
import pytest
import spconv.pytorch as spconv
import torch
import torch.nn as nn
from _maft_fixture import ikne_cfg, load, relative_error, scene_inputs
from mmdet3d.registry import MODELS

import ikne_plugin.models  # noqa: F401  (registers IKNE, SpConvUNet and the heads)
from ikne_plugin.models.maft_compat import maft_backbone_state_dict


@pytest.fixture(scope='module')
def maft():
    return load('maft_backbone_weights.pth'), load('maft_parity_scene.pth')


def build_small_ikne(config):
    """IKNE with MAFT's small configuration."""
    return MODELS.build(ikne_cfg(config)).eval()


def test_voxelisation_reproduces_mafts(maft):
    _, scene = maft
    model = build_small_ikne(maft[0]['config'])
    inputs, _ = scene_inputs(scene)
    points = inputs['points'][0]
    voxel_coords, p2v, spatial_shape = model.voxelize_points(
        points[:, :3], torch.zeros(len(points), dtype=torch.long), [len(points)])
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

    with torch.no_grad():
        sp_feats = model.extract_feat(*scene_inputs(scene))['sp_feats'][0]
    error = relative_error(sp_feats, weights['sp_feats'])
    print(f'max |ours - MAFT| / max |MAFT| = {error:.2e}')
    assert error <= 1e-4


def test_plain_spconv_would_scramble_mafts_weights(maft):
    """The trap our convolutions avoid: spconv's own class, under mmdet3d's patch, permutes
    MAFT's version-1 weights (refused for their shape here)."""
    weights, _ = maft
    conv = spconv.SubMConv3d(6, 16, kernel_size=3, padding=1, bias=False)
    state_dict = {'weight': weights['state_dict']['input_conv.0.weight']}
    with pytest.raises(RuntimeError, match='size mismatch'):
        conv.load_state_dict(state_dict)
