"""SpConvUNet: MAFT's names and shapes, convolutions against a dense reference, tiny scenes."""
import json
from pathlib import Path

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from spconv.core import ConvAlgo
from spconv.pytorch.conv import SparseConvolution

from ikne_plugin.models.backbones import SpConvUNet
from ikne_plugin.models.spconv_compat import SparseConv3d, SubMConv3d

DATA = Path(__file__).parent / 'data'
MAFT_BACKBONE = ('input_conv', 'unet', 'output_layer')


def random_voxels(num, extent, batch_size=1, seed=0):
    """``num`` distinct random voxels per scene in an ``extent``^3 grid: (coords int32 [M, 4])."""
    g = torch.Generator().manual_seed(seed)
    coords = []
    for b in range(batch_size):
        flat = torch.randperm(extent ** 3, generator=g)[:num]
        xyz = torch.stack([flat // extent ** 2, flat // extent % extent, flat % extent], 1)
        coords.append(torch.cat([torch.full((num, 1), b), xyz], 1))
    return torch.cat(coords).int()


def test_names_and_shapes_match_maft_full_configuration():
    """The default configuration's state dict is MAFT's full backbone, name for name, shape for shape."""
    maft = {name: tuple(shape) for name, shape, _ in
            json.loads((DATA / 'maft_full_state_dict_keys.json').read_text())
            if name.split('.', 1)[0] in MAFT_BACKBONE}
    ours = {name: tuple(t.shape) for name, t in SpConvUNet().state_dict().items()}
    assert sorted(set(maft) ^ set(ours)) == []
    assert {k for k in maft if maft[k] != ours[k]} == set()
    num_params = sum(p.numel() for p in SpConvUNet().parameters())
    assert 10.5e6 < num_params < 11.5e6  # DESIGN.md: about 11.0 M


def test_state_dict_carries_spconv2_version(monkeypatch):
    """Our sparse convolutions save metadata version 2 (read as is by mmdet3d's patched loader)
    even where spconv's own classes save version 1, i.e. where mmdet3d.models is not imported."""
    monkeypatch.setattr(spconv.SparseModule, '_version', 1)
    assert spconv.SubMConv3d(2, 2, 3).state_dict()._metadata['']['version'] == 1
    metadata = SpConvUNet(channels=(8, 16), num_blocks=1).state_dict()._metadata
    assert metadata['input_conv.0']['version'] == 2
    assert metadata['unet.conv.2']['version'] == 2
    assert metadata['unet.deconv.2']['version'] == 2


def dense(feats, coords, extent):
    """Scatter sparse features [M, C] at coords [M, 4] (batch 0) into a dense [1, C, D, D, D] grid."""
    grid = feats.new_zeros(1, feats.shape[1], extent, extent, extent)
    x, y, z = coords[:, 1].long(), coords[:, 2].long(), coords[:, 3].long()
    grid[0, :, x, y, z] = feats.T
    return grid


def test_convolutions_match_dense_reference():
    """Submanifold k3 and strided k2 s2 convolutions equal torch's dense conv3d at their sites."""
    torch.manual_seed(0)
    extent = 12
    coords = random_voxels(300, extent)
    feats = torch.randn(len(coords), 5)
    x = spconv.SparseConvTensor(feats, coords, [extent] * 3, 1)

    subm = SubMConv3d(5, 7, kernel_size=3, padding=1, bias=False)
    out = subm(x)
    assert torch.equal(out.indices, coords)
    weight = subm.weight.permute(0, 4, 1, 2, 3)  # spconv 2 [out, k, k, k, in] -> torch's layout
    ref = F.conv3d(dense(feats, coords, extent), weight, padding=1)
    xi, yi, zi = (coords[:, i].long() for i in (1, 2, 3))
    torch.testing.assert_close(out.features, ref[0, :, xi, yi, zi].T, atol=1e-5, rtol=1e-5)

    down = SparseConv3d(5, 7, kernel_size=2, stride=2, bias=False)
    out = down(x)
    ref = F.conv3d(dense(feats, coords, extent), down.weight.permute(0, 4, 1, 2, 3), stride=2)
    expected_sites = torch.unique(coords[:, 1:] // 2, dim=0)
    assert torch.equal(torch.unique(out.indices[:, 1:], dim=0), expected_sites.int())
    xi, yi, zi = (out.indices[:, i].long() for i in (1, 2, 3))
    torch.testing.assert_close(out.features, ref[0, :, xi, yi, zi].T, atol=1e-5, rtol=1e-5)


def test_cpu_forward_uses_native_algorithm_and_backpropagates():
    """On CPU every conv runs Native; the CUDA choice stays spconv's; gradients reach all weights."""
    torch.manual_seed(0)
    model = SpConvUNet(in_channels=6, channels=(8, 16, 24), num_blocks=2)
    coords = random_voxels(400, 16, batch_size=2)
    feats = torch.randn(len(coords), 6)
    out = model(feats, coords, [16] * 3, 2)
    assert out.shape == (len(coords), 8)
    assert (out >= 0).all()  # output BN-ReLU
    out.square().mean().backward()
    convs = [m for m in model.modules() if isinstance(m, SparseConvolution)]
    assert convs and all(m.algo == ConvAlgo.Native for m in convs)
    assert all(m.cuda_algo != ConvAlgo.Native for m in convs)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_scenes_are_independent_in_a_batch():
    """A scene's output does not depend on the other scenes of the batch (eval mode)."""
    torch.manual_seed(0)
    model = SpConvUNet(in_channels=6, channels=(8, 16, 24), num_blocks=1).eval()
    coords = random_voxels(300, 16, batch_size=2)
    feats = torch.randn(len(coords), 6)
    both = model(feats, coords, [16] * 3, 2)
    first = model(feats[:300], coords[:300], [16] * 3, 1)
    torch.testing.assert_close(both[:300], first, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('num_voxels', [1, 2, 5])
@pytest.mark.parametrize('training', [True, False])
def test_scene_of_a_few_voxels(num_voxels, training):
    """A scene of one or a few voxels (far apart) runs forward and backward without error."""
    torch.manual_seed(0)
    model = SpConvUNet(in_channels=6, channels=(8, 16, 24), num_blocks=1).train(training)
    coords = torch.tensor([[0, 0, 0, 0], [0, 100, 3, 7], [0, 50, 50, 50], [0, 1, 0, 0],
                           [0, 127, 127, 127]], dtype=torch.int32)[:num_voxels]
    feats = torch.randn(num_voxels, 6, requires_grad=True)
    out = model(feats, coords, [128] * 3, 1)
    assert out.shape == (num_voxels, 8) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(feats.grad).all()
    running = [m.running_var for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(torch.isfinite(v).all() for v in running)


def test_bad_input_width_is_named():
    model = SpConvUNet(in_channels=6, channels=(8,), num_blocks=1)
    with pytest.raises(ValueError, match=r'voxel features \[M, 6\]'):
        model(torch.randn(3, 9), random_voxels(3, 4), [4] * 3, 1)
