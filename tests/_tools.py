"""Helpers of the tests that run tools/*.py in-process on tiny synthetic ScanNet data."""
import importlib.util
import os
import runpy
import sys

import pytest
import torch
from mmengine.visualization import Visualizer
from ikne_plugin.datasets.scannet_converter import convert_scannet
from ikne_plugin.datasets.synthetic_scannet import make_synthetic_scannet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'ikne_trans_synthetic.py')


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """One torch thread: on the shared 2-core machine, OpenMP's second thread waits for a
    core and a tiny model's iteration takes seconds instead of 0.2 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_data_root(tmp_path_factory):
    """Two train rooms and one val room (coarse: 0.2 m vertex spacing), converted."""
    raw = str(tmp_path_factory.mktemp('raw'))
    make_synthetic_scannet(raw, 2, 1, seed=3, spacing=0.2)
    out = str(tmp_path_factory.mktemp('data'))
    assert convert_scannet(raw, out, progress=False)[1] == []
    return out


def run_tool(name, *args):
    """Run tools/<name>.py in this process, as `python tools/<name>.py ARGS` would. The
    visualiser of an earlier run in this process is forgotten: mmengine would reuse it (the
    configs name it) and log into that run's folder."""
    Visualizer._instance_dict.clear()
    argv = sys.argv
    sys.argv = [name] + [str(a) for a in args]
    try:
        runpy.run_path(os.path.join(ROOT, 'tools', f'{name}.py'), run_name='__main__')
    finally:
        sys.argv = argv


def load_tool(name):
    """tools/<name>.py as a module (its functions, without running its main)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# a model of the synthetic config's architecture, smaller still: seconds per test
TINY_MODEL = ['model.backbone.channels=(8,16,24)', 'model.head.in_channels=8',
              'model.head.d_model=16', 'model.head.num_heads=2', 'model.head.ffn_dim=32',
              'model.head.num_layers=2', 'model.head.num_queries=12',
              'model.head.criterion.isg_loss.rank=4']


def tiny_options(data_root, max_epochs, *extra):
    """--cfg-options for a few iterations of a tiny model on ``data_root`` in this process
    (no workers)."""
    return ['--cfg-options', *TINY_MODEL, f'train_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', f'train_cfg.max_epochs={max_epochs}',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=3', 'default_hooks.logger.interval=1',
            *extra]
