"""Checkpoints of IKNE load back exactly in a process where mmdet3d.models patched spconv's loading."""
from collections import OrderedDict

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn as nn
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.logging import MessageHub
from mmengine.runner import load_checkpoint, save_checkpoint
from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu

import ikne_plugin.models  # noqa: F401  (imports mmdet3d.models: the spconv patch is active)
from ikne_plugin.utils import allow_mmengine_checkpoint_globals, load_model_checkpoint


def build_model(channels=(8, 16, 24)):
    torch.manual_seed(0)
    backbone = dict(type='SpConvUNet', in_channels=6, channels=channels, num_blocks=1)
    head = dict(type='IKNETransformerHead', in_channels=channels[0], num_classes=18,
                d_model=32, num_heads=4, ffn_dim=64, num_layers=2, num_queries=8)
    return MODELS.build(dict(type='IKNE', backbone=backbone, head=head))


def trained(model):
    """Move the weights and BatchNorm statistics away from their initial values."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith('running_var'):
                b.uniform_(0.5, 2.0)
            elif name.endswith('running_mean'):
                b.normal_()
    return model


@pytest.fixture(scope='module')
def scene():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(800, 3, generator=g)
    points = torch.cat([xyz, torch.rand(800, 3, generator=g) * 2 - 1], 1)
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(
        sp_pts_mask=torch.unique(torch.floor(xyz / 0.1).long(), dim=0, return_inverse=True)[1])
    return dict(points=[points]), [sample]


def outputs(model, scene):
    with torch.no_grad():
        return model.eval().extract_feat(*scene)['sp_feats'][0]


def test_mmdet3d_patch_is_active():
    assert spconv.SparseModule._load_from_state_dict is not nn.Module._load_from_state_dict


@pytest.mark.parametrize('metadata', ['as saved', 'spconv version 1', 'none'])
def test_state_dict_round_trip(scene, metadata):
    """state_dict() -> load_state_dict() gives identical outputs, also from a state dict saved
    by plain spconv (metadata version 1, as MAFT's) or without metadata (a plain dict)."""
    model = trained(build_model())
    state_dict = model.state_dict()
    if metadata == 'spconv version 1':
        state_dict._metadata = OrderedDict((k, dict(v, version=1))
                                           for k, v in state_dict._metadata.items())
    elif metadata == 'none':
        state_dict = dict(state_dict)
    expected = outputs(model, scene)
    fresh = build_model()
    assert not torch.equal(outputs(fresh, scene), expected)
    fresh.load_state_dict(state_dict)
    assert torch.equal(outputs(fresh, scene), expected)


def test_runner_checkpoint_round_trip(scene, tmp_path):
    """A checkpoint in CheckpointHook's format (meta, state_dict, message_hub, optimizer) loads
    back through mmengine's load_checkpoint with identical outputs."""
    allow_mmengine_checkpoint_globals()
    model = trained(build_model())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    model.extract_feat(*scene)['sp_feats'][0].sum().backward()
    optimizer.step()
    hub = MessageHub.get_instance('test_checkpoint_roundtrip')
    hub.update_scalar('train/loss', 1.5)
    path = tmp_path / 'epoch_1.pth'
    save_checkpoint(dict(meta=dict(epoch=1, iter=300, seed=0, mmengine_version='0.10.7'),
                         state_dict=weights_to_cpu(get_state_dict(model)),
                         message_hub=hub.state_dict(), optimizer=optimizer.state_dict()),
                    str(path))

    expected = outputs(model, scene)
    fresh = build_model()
    checkpoint = load_checkpoint(fresh, str(path), map_location='cpu', strict=True)
    assert checkpoint['meta']['epoch'] == 1
    assert torch.equal(outputs(fresh, scene), expected)

    again = build_model()
    load_model_checkpoint(again, path)
    assert torch.equal(outputs(again, scene), expected)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    save_checkpoint(dict(state_dict=build_model(channels=(8, 16, 24, 32)).state_dict()),
                    str(path))
    with pytest.raises(ValueError, match=r'unexpected: backbone\.unet\.u\.u\.'):
        load_model_checkpoint(build_model(), path)
    with pytest.raises(RuntimeError, match=r'unexpected key in source state_dict: .*unet\.u\.u\.'):
        load_checkpoint(build_model(), str(path), strict=True)
    wider = build_model(channels=(16, 16, 24)).state_dict()
    with pytest.raises(RuntimeError, match=r'size mismatch for backbone\.input_conv\.0\.weight'):
        build_model().load_state_dict(wider)
