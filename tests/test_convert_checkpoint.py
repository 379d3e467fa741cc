"""tools/convert_checkpoint.py: MAFT's checkpoint, converted, reproduces MAFT's outputs in our model.

MAFT's state dict of the small configuration (tests/_maft_fixture.py), saved as gorilla saves it,
goes through the tool; our model of the same configuration, loaded strictly from the result,
gives MAFT's superpoint features and every decoder layer's outputs, whatever the import order of
mmdet3d.models (whose spconv patch would scramble MAFT's version-1 sparse-conv weights) and with
the patch undone. Also: every entry of MAFT's full ScanNet model fits configs/ikne_trans_scannet.py,
and bad inputs end with one message naming the file, writing nothing.
"""
import json
import os
import runpy
import subprocess
import sys
from collections import OrderedDict

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn as nn
from _maft_fixture import ikne_cfg, load, maft_full_state_dict_entries, maft_state_dict, model_errors
from mmdet3d.registry import MODELS
from mmengine.config import Config

import ikne_plugin  # noqa: F401  (registers the components; imports mmdet3d.models)
from ikne_plugin.models.maft_compat import maft_checkpoint_state_dict
from ikne_plugin.utils import UserInputError, load_model_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'convert_checkpoint.py')
SCANNET_CONFIG = os.path.join(ROOT, 'configs', 'ikne_trans_scannet.py')
SP_FEATS_TOL, LAYER_TOL = 1e-4, 1e-3  # relative to the scale of MAFT's outputs (issue 8)


def gorilla_checkpoint(state_dict):
    """What MAFT's trainer saves (gorilla.save_checkpoint): meta, model, optimizer, scheduler."""
    return dict(meta=dict(epoch=512), model=state_dict,
                optimizer=dict(state={}, param_groups=[dict(lr=1e-4, params=[0])]),
                scheduler=dict(last_epoch=512, base_lrs=[1e-4]))


@pytest.fixture(scope='module')
def small_config(tmp_path_factory):
    """ikne_trans_scannet.py with the model of MAFT's small configuration."""
    path = tmp_path_factory.mktemp('config') / 'ikne_small.py'
    path.write_text(f'_base_ = [{SCANNET_CONFIG!r}]\n'
                    f'model = {ikne_cfg(load("maft_parity_fixture.pth")["config"])!r}\n')
    return str(path)


@pytest.fixture(scope='module')
def converted(tmp_path_factory, small_config):
    """`python tools/convert_checkpoint.py maft IN OUT --config SMALL` on MAFT's checkpoint."""
    tmp = tmp_path_factory.mktemp('convert')
    source, out = tmp / 'maft_small.pth', tmp / 'ikne_small.pth'
    torch.save(gorilla_checkpoint(maft_state_dict()), source)
    result = subprocess.run([sys.executable, TOOL, 'maft', str(source), str(out),
                             '--config', small_config], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert 'criterion constants (training only) equal the config' in result.stdout
    return str(out)


def assert_matches_maft(errors, case):
    print(f'\nMAFT parity of the converted checkpoint ({case}), max |ours - MAFT| / max |MAFT|: '
          + ', '.join(f'{k} {v:.2e}' for k, v in errors.items()))
    assert errors['sp_feats'] <= SP_FEATS_TOL, errors
    assert max(v for k, v in errors.items() if k != 'sp_feats') <= LAYER_TOL, errors


@pytest.mark.parametrize('mmdet3d_patch', [True, False], ids=['mmdet3d-patched', 'unpatched'])
def test_converted_checkpoint_reproduces_maft(converted, small_config, mmdet3d_patch, monkeypatch):
    assert spconv.SparseModule._load_from_state_dict is not nn.Module._load_from_state_dict
    if not mmdet3d_patch:
        monkeypatch.setattr(spconv.SparseModule, '_load_from_state_dict',
                            nn.Module._load_from_state_dict)
    model = MODELS.build(Config.fromfile(small_config).model)
    ckpt = load_model_checkpoint(model, converted)
    assert ckpt['meta']['source'] == 'maft' and ckpt['meta']['source_meta'] == dict(epoch=512)
    assert set(ckpt['meta']['maft_criterion']) == {
        'criterion.class_weight', 'criterion.loss_weight', 'criterion.matcher.cost_weight'}
    # MAFT's spconv metadata (version 1) is kept: the load really goes through the patch's trap
    assert ckpt['state_dict']._metadata['backbone.input_conv.0'] == {'version': 1}
    assert_matches_maft(model_errors(model), 'mmdet3d patch ' + ('active' if mmdet3d_patch else 'undone'))


# A fresh interpreter per import order: mmdet3d.models before or after our package.
ORDER_SCRIPT = '''
import json, sys
sys.path.insert(0, {tests!r})
{imports}
import spconv.pytorch as spconv, torch.nn as nn
from mmdet3d.registry import MODELS
from mmengine.config import Config
from ikne_plugin.utils import load_model_checkpoint
from _maft_fixture import model_errors
model = MODELS.build(Config.fromfile({config!r}).model)
load_model_checkpoint(model, {ckpt!r})
patched = spconv.SparseModule._load_from_state_dict is not nn.Module._load_from_state_dict
print(json.dumps(dict(patched=patched, errors=model_errors(model))))
'''


@pytest.mark.parametrize('imports', ['import mmdet3d.models\nimport ikne_plugin',
                                     'import ikne_plugin\nimport mmdet3d.models'],
                         ids=['mmdet3d.models-first', 'ikne_plugin-first'])
def test_converted_checkpoint_loads_whatever_the_import_order(converted, small_config, imports):
    script = ORDER_SCRIPT.format(tests=os.path.dirname(__file__), imports=imports,
                                 config=small_config, ckpt=converted)
    result = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['patched']
    assert_matches_maft(report['errors'], imports.replace('\n', '; '))


def test_full_configuration_maps_onto_the_scannet_config(tool_main, tmp_path, capsys):
    """Every entry of MAFT's full ScanNet state dict maps, with its shape, onto the model of
    configs/ikne_trans_scannet.py (the tool's default): the converted checkpoint loads as
    tools/test.py loads it (strictly: nothing missing, unexpected or mis-shaped)."""
    entries = maft_full_state_dict_entries()
    maft = OrderedDict((name, torch.zeros(shape, dtype=getattr(torch, dtype.split('.')[-1])))
                       for name, shape, dtype in entries)
    source, out = tmp_path / 'maft_scannet.pth', tmp_path / 'ikne_scannet.pth'
    torch.save(gorilla_checkpoint(maft), source)
    tool_main(['maft', str(source), str(out)])
    assert f'{len(entries) - 3} entries' in capsys.readouterr().out  # all but criterion's 3
    model = MODELS.build(Config.fromfile(SCANNET_CONFIG).model)
    state_dict = load_model_checkpoint(model, out)['state_dict']
    assert len(state_dict) == len(model.state_dict()) == 533


def test_official_config_changes_only_training():
    """configs/ikne_trans_scannet_official.py: the ScanNet model and inference, with the released
    code's criterion (last-layer Dice summed over the batch, IKA with identity target and
    batch-wide normalisation, no ISG)."""
    official = Config.fromfile(os.path.join(ROOT, 'configs', 'ikne_trans_scannet_official.py'))
    criterion = MODELS.build(official.model.head.pop('criterion'))
    assert not criterion.average_last_dice and criterion.isg_loss is None
    assert (criterion.ika_loss.target, criterion.ika_loss.normalize) == ('identity', 'batch')
    scannet = Config.fromfile(SCANNET_CONFIG)
    scannet.model.head.pop('criterion')
    assert official.model == scannet.model
    assert official.test_dataloader == scannet.test_dataloader


def test_state_dict_is_found_wherever_the_official_code_puts_it():
    state_dict = maft_state_dict()
    ddp = OrderedDict(('module.' + k, v) for k, v in state_dict.items())
    ddp._metadata = OrderedDict([('', {'version': 1})] + [
        ('module' + ('.' + k if k else ''), v) for k, v in state_dict._metadata.items()])
    for checkpoint in (state_dict, dict(net=state_dict), dict(state_dict=state_dict),
                       gorilla_checkpoint(state_dict), gorilla_checkpoint(ddp)):
        found = maft_checkpoint_state_dict(checkpoint)
        assert list(found) == list(state_dict)
        assert found._metadata['input_conv.0'] == {'version': 1}
    assert list(maft_checkpoint_state_dict(ddp)._metadata) == list(state_dict._metadata)


class NotPlainData:
    """A pickled object that a weights-only load refuses."""


@pytest.fixture(scope='module')
def tool_main():
    return runpy.run_path(TOOL)['main']


def test_ikne_source_name_is_accepted(tool_main, small_config, tmp_path, capsys):
    source, out = tmp_path / 'raw.pth', tmp_path / 'out.pth'
    torch.save(maft_state_dict(), source)  # a raw state dict
    tool_main(['ikne', str(source), str(out), '--config', small_config])
    weights = sum(not k.startswith('criterion.') for k in maft_state_dict())
    assert f'raw.pth (ikne): {weights} entries' in capsys.readouterr().out
    assert set(torch.load(out)) == {'meta', 'state_dict'}


def bad_inputs(tmp_path):
    """(file, expected message) pairs; each file is not a usable MAFT checkpoint of the
    small configuration."""
    good = maft_state_dict()
    cases = []

    def saved(name, obj, match):
        torch.save(obj, tmp_path / name)
        cases.append((tmp_path / name, match))

    cases.append((tmp_path / 'absent.pth', r'checkpoint file not found: .*absent\.pth'))
    (tmp_path / 'dir.pth').mkdir()
    cases.append((tmp_path / 'dir.pth', r'checkpoint file is a directory, not a file: .*dir\.pth'))
    (tmp_path / 'notes.pth').write_text('not a checkpoint\n')
    cases.append((tmp_path / 'notes.pth', r'notes\.pth: it is truncated, corrupt or not a torch'))
    truncated = tmp_path / 'truncated.pth'
    torch.save(gorilla_checkpoint(good), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100000])
    cases.append((truncated, r'truncated\.pth: it is truncated, corrupt'))
    saved('pickled.pth', dict(model=good, extra=NotPlainData()),
          r'pickled\.pth safely: it holds Python objects .*NotPlainData')
    saved('no_weights.pth', dict(meta=dict(epoch=3)), r'no_weights\.pth is not a MAFT checkpoint: no state dict')
    ours = {'backbone.' + k: v for k, v in good.items()}  # e.g. one of our own checkpoints
    saved('ours.pth', dict(state_dict=ours),
          rf'ours\.pth is not a MAFT checkpoint: {len(good)} of {len(good)} entries are not MAFT/IKNE model entries'
          r'.*backbone\.')
    saved('unknown.pth', gorilla_checkpoint(dict(good, **{'decoder.adapter.weight': torch.zeros(2)})),
          rf'1 of {len(good) + 1} entries .*: decoder\.adapter\.weight$')
    missing = OrderedDict(good)
    del missing['decoder.out_score.0.bias'], missing['unet.blocks.block0.conv_branch.2.weight']
    saved('missing.pth', gorilla_checkpoint(missing),
          r'missing\.pth \(converted from maft, checked against .*ikne_small\.py\) does not fit .*missing: '
          r'backbone\.unet\.blocks\.block0\.conv_branch\.2\.weight, head\.score_head\.0\.bias$')
    return cases


def test_bad_inputs_end_with_a_message_naming_the_file(tool_main, small_config, tmp_path):
    out = tmp_path / 'out' / 'converted.pth'
    for path, match in bad_inputs(tmp_path):
        with pytest.raises((UserInputError, FileNotFoundError), match=match):
            tool_main(['maft', str(path), str(out), '--config', small_config])
        assert not out.parent.exists() or not os.listdir(out.parent)  # nothing written


def test_another_configuration_is_refused(tool_main, tmp_path):
    """MAFT's small model against the full ScanNet config (the default): refused, with the
    mis-shaped and missing names."""
    source = tmp_path / 'small.pth'
    torch.save(gorilla_checkpoint(maft_state_dict()), source)
    with pytest.raises(UserInputError, match=r'ikne_trans_scannet\.py\) does not fit .*missing: '
                                             r'backbone\.unet\..*shape mismatch: '
                                             r'backbone\.input_conv\.0\.weight'):
        tool_main(['maft', str(source), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()


def test_command_line_error_is_one_line(tmp_path):
    source = tmp_path / 'broken.pth'
    source.write_bytes(b'PK\x03\x04 not really a zip')
    result = subprocess.run([sys.executable, TOOL, 'ikne', str(source), str(tmp_path / 'out.pth')],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: cannot read checkpoint {source}: it is truncated, corrupt')
