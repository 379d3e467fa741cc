"""tools/train.py and tools/test.py end to end on tiny synthetic data: train a few iterations
through mmengine's Runner, resume, evaluate a checkpoint strictly, and the configs' inheritance."""
import glob
import json
import os
import runpy
import sys

import pytest
import torch
from mmengine.config import Config

from ikne_plugin.datasets.scannet_converter import convert_scannet
from ikne_plugin.datasets.synthetic_scannet import make_synthetic_scannet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'ikne_trans_synthetic.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    raw = str(tmp_path_factory.mktemp('raw'))
    make_synthetic_scannet(raw, 2, 1, seed=3, spacing=0.2)
    out = str(tmp_path_factory.mktemp('data'))
    assert convert_scannet(raw, out, progress=False)[1] == []
    return out


def run_tool(name, *args):
    """Run tools/<name>.py in this process, as `python tools/<name>.py ARGS` would."""
    argv = sys.argv
    sys.argv = [name] + [str(a) for a in args]
    try:
        runpy.run_path(os.path.join(ROOT, 'tools', f'{name}.py'), run_name='__main__')
    finally:
        sys.argv = argv


def tiny_options(data_root, max_epochs):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', f'train_cfg.max_epochs={max_epochs}',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=3', 'default_hooks.logger.interval=1']


def logged_losses(work_dir):
    """The training losses that mmengine wrote to the runs' JSON-lines scalar logs (in one
    process, mmengine's visualizer keeps writing to the first run's folder)."""
    losses = []
    for path in sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            losses += [json.loads(line)['loss'] for line in f if '"loss"' in line]
    return losses


def test_train_resume_and_test(data_root, tmp_path):
    work_dir = tmp_path / 'work'
    run_tool('train', CONFIG, '--work-dir', work_dir, *tiny_options(data_root, 2))
    assert (work_dir / 'epoch_2.pth').is_file()
    losses = logged_losses(work_dir)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))

    # --resume picks up the last checkpoint and trains only the missing epoch
    run_tool('train', CONFIG, '--work-dir', work_dir, '--resume', *tiny_options(data_root, 3))
    assert (work_dir / 'epoch_3.pth').is_file()
    assert len(logged_losses(work_dir)) == 3

    metrics_file = tmp_path / 'metrics.json'
    run_tool('test', CONFIG, work_dir / 'epoch_3.pth', '--work-dir', work_dir,
             '--metrics-json', metrics_file, *tiny_options(data_root, 3))
    metrics = json.loads(metrics_file.read_text())
    assert {'all_ap', 'all_ap_50%', 'all_ap_25%'} <= set(metrics)


def test_test_refuses_a_checkpoint_of_another_model(data_root, tmp_path):
    ckpt = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.something.weight': torch.zeros(3)}}, ckpt)
    with pytest.raises(SystemExit, match='error: checkpoint .*other.pth does not fit this model'
                       '.*missing.*unexpected'):
        run_tool('test', CONFIG, ckpt, '--work-dir', tmp_path, *tiny_options(data_root, 1))


def test_test_refuses_a_truncated_checkpoint(data_root, tmp_path):
    ckpt = tmp_path / 'truncated.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    with pytest.raises(SystemExit, match='error: cannot read checkpoint .*truncated.pth: it is '
                       'truncated, corrupt'):
        run_tool('test', CONFIG, ckpt, '--work-dir', tmp_path, *tiny_options(data_root, 1))


def test_synthetic_config_inherits_the_scannet_recipe():
    scannet = Config.fromfile(os.path.join(ROOT, 'configs', 'ikne_trans_scannet.py'))
    synthetic = Config.fromfile(CONFIG)
    # the paper's recipe
    assert scannet.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=0.05)
    assert scannet.param_scheduler.power == 0.9 and scannet.train_cfg.max_epochs == 512
    assert scannet.train_cfg.val_interval == 16 and scannet.train_dataloader.batch_size == 4
    assert scannet.model.head.num_queries == 400 and scannet.model.voxel_size == 0.02
    assert scannet.default_hooks.checkpoint.save_best == 'all_ap'
    assert scannet.custom_imports.imports == ['ikne_plugin']
    # the synthetic config overrides sizes and keeps everything else
    assert synthetic.model.head.num_queries < scannet.model.head.num_queries
    assert synthetic.model.head.criterion.matcher == scannet.model.head.criterion.matcher
    assert synthetic.model.head.criterion.ika_loss == scannet.model.head.criterion.ika_loss
    assert synthetic.optim_wrapper.optimizer.type == 'AdamW'
    assert synthetic.test_evaluator == scannet.test_evaluator
    assert synthetic.test_dataloader.dataset.pipeline == scannet.test_dataloader.dataset.pipeline
    assert synthetic.param_scheduler.end == synthetic.train_cfg.max_epochs


def test_unknown_component_type_names_the_registry_and_its_types(data_root, tmp_path):
    options = tiny_options(data_root, 1)
    options.append('model.head.type=IKNETransformerHaed')
    with pytest.raises(SystemExit) as exit_info:
        run_tool('train', CONFIG, '--work-dir', tmp_path, *options)
    message = str(exit_info.value)
    assert "'IKNETransformerHaed' is not a type in the mmdet3d::model registry" in message
    assert 'Did you mean IKNETransformerHead' in message
    assert 'SpConvUNet' in message and 'IKNECriterion' in message  # the registry's types
