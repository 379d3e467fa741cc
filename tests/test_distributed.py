"""Distributed training through tools/dist_train.sh (torchrun, DDP via mmengine's launcher):
two CPU processes (gloo) end with identical weights after training on different scenes;
the SyncBN switch converts every norm of the model; on a GPU, NCCL with --amp --sync-bn
and tools/dist_test.sh, and two ranks sharing it (gloo: NCCL takes one rank a GPU) whose
SyncBN running statistics agree; on two GPUs, the same through NCCL."""
import os
import socket
import subprocess
import sys

import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.model import convert_sync_batchnorm

from _tools import CONFIG, ROOT, make_data_root, tiny_options


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data_root(tmp_path_factory)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def process_env(**extra):
    """The environment of a training process: the test hook importable, one OpenMP thread."""
    return dict(os.environ, OMP_NUM_THREADS='1', **extra,
                PYTHONPATH=os.pathsep.join([os.path.join(ROOT, 'tests'), ROOT, os.environ.get('PYTHONPATH', '')]))


def run_dist_tool(script, args, tmp_path, cuda):
    """Run tools/<script> (a torchrun launcher) with the test hook importable; fail with the
    end of its output."""
    env = process_env(PYTHON=sys.executable, PORT=str(free_port()))
    if not cuda:
        env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU path (gloo) also on a machine with GPUs
    proc = subprocess.run(['bash', os.path.join(ROOT, 'tools', script), *map(str, args)], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]


def rank_config(tmp_path):
    """The synthetic config with the hook that saves what each rank holds at the end."""
    config = tmp_path / 'config.py'
    config.write_text(f'_base_ = [{CONFIG!r}]\n'
                      "custom_imports = dict(imports=['ikne_plugin', '_rank_params_hook'], "
                      'allow_failed_imports=False)\n'
                      "custom_hooks = [dict(type='RNGStateHook'), dict(type='SaveRankParamsHook')]\n")
    return config


def dist_train(data_root, tmp_path, processes, *options, cuda=False):
    """Two epochs of the synthetic config on `processes` ranks, batch 1 each; returns what
    every rank saved (tests/_rank_params_hook.py) and the work dir."""
    config, work_dir = rank_config(tmp_path), tmp_path / 'work'
    run_dist_tool('dist_train.sh', [config, processes, '--work-dir', work_dir, *options,
                                    *tiny_options(data_root, 2, 'train_dataloader.batch_size=1')],
                  tmp_path, cuda)
    return [torch.load(work_dir / f'rank{r}.pth') for r in range(processes)], config, work_dir


def check_sync_bn_ranks(ranks):
    """Two ranks trained on different scenes, SyncBN on, and ended with the same weights and,
    SyncBN normalising with the statistics of both ranks' scenes, the same running means."""
    assert [(r['world_size'], r['wrapper'], r['sync_bn']) for r in ranks] == \
        [(2, 'MMDistributedDataParallel', True)] * 2
    assert all(a != b for a, b in zip(ranks[0]['scenes'], ranks[1]['scenes']))
    first, second = ranks[0]['after'], ranks[1]['after']
    assert all(torch.equal(first[name], second[name]) for name in first)
    stats = [r['norm_stats'] for r in ranks]
    assert len(stats[0]) > 10 and stats[0].keys() == stats[1].keys()
    assert all(torch.equal(stats[0][name], stats[1][name]) for name in stats[0])
    assert not all(torch.equal(stats[0][name], ranks[0]['norm_stats_before'][name]) for name in stats[0])


def test_two_cpu_processes_end_with_identical_weights(data_root, tmp_path):
    ranks, _, _ = dist_train(data_root, tmp_path, 2)
    assert [(r['world_size'], r['wrapper']) for r in ranks] == [(2, 'MMDistributedDataParallel')] * 2
    # data parallel: in every iteration the two ranks trained on different scenes
    assert len(ranks[0]['scenes']) == len(ranks[1]['scenes']) == 2
    assert all(a != b for a, b in zip(ranks[0]['scenes'], ranks[1]['scenes']))
    first, second = ranks[0]['after'], ranks[1]['after']
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    changed = [name for name in first if not torch.equal(first[name], ranks[0]['before'][name])]
    assert len(changed) > len(first) // 2  # trained, not only identical
    # without SyncBN each rank's norms keep the statistics of its own scenes
    assert not all(torch.equal(a, b) for a, b in zip(ranks[0]['norm_stats'].values(),
                                                     ranks[1]['norm_stats'].values()))


def test_sync_bn_converts_every_norm_of_the_model():
    cfg = Config.fromfile(CONFIG)
    model = MODELS.build(cfg.model)
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) > 10  # the backbone's, inside spconv's containers
    converted = convert_sync_batchnorm(model, 'torch')  # what the Runner does with cfg.sync_bn='torch'
    synced = [n for n, m in converted.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert synced == norms


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_one_gpu_nccl_amp_sync_bn_then_dist_test(data_root, tmp_path):
    (rank, ), config, work_dir = dist_train(data_root, tmp_path, 1, '--amp', '--sync-bn', cuda=True)
    assert (rank['world_size'], rank['wrapper'], rank['sync_bn']) == (1, 'MMDistributedDataParallel', True)
    assert all(torch.isfinite(p).all() for p in rank['after'].values())
    assert 'loss_scaler' in torch.load(work_dir / 'epoch_2.pth', weights_only=False)['optimizer']
    metrics = tmp_path / 'metrics.json'
    run_dist_tool('dist_test.sh', [config, work_dir / 'epoch_2.pth', 1, '--amp', '--work-dir', work_dir,
                                   '--metrics-json', metrics, *tiny_options(data_root, 2)], tmp_path, True)
    assert 'all_ap' in metrics.read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_two_ranks_share_one_gpu_sync_bn(data_root, tmp_path):
    """What torchrun starts, but both ranks on GPU 0 (LOCAL_RANK 0) and gloo, which unlike NCCL
    lets two ranks share a GPU: SyncBN's gathers between the ranks run on CUDA tensors."""
    config, work_dir, port = rank_config(tmp_path), tmp_path / 'work', str(free_port())
    args = [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), config, '--launcher', 'pytorch',
            '--sync-bn', '--work-dir', work_dir,
            *tiny_options(data_root, 2, 'train_dataloader.batch_size=1', 'env_cfg.dist_cfg.backend=gloo')]
    env = process_env(WORLD_SIZE='2', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
    procs = [subprocess.Popen(list(map(str, args)), env=dict(env, RANK=str(r)), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    check_sync_bn_ranks([torch.load(work_dir / f'rank{r}.pth') for r in range(2)])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA GPUs')
def test_two_gpus_nccl_sync_bn_then_dist_test(data_root, tmp_path):
    ranks, config, work_dir = dist_train(data_root, tmp_path, 2, '--amp', '--sync-bn', cuda=True)
    check_sync_bn_ranks(ranks)
    metrics = tmp_path / 'metrics.json'
    run_dist_tool('dist_test.sh', [config, work_dir / 'epoch_2.pth', 2, '--amp', '--work-dir', work_dir,
                                   '--metrics-json', metrics, *tiny_options(data_root, 2)], tmp_path, True)
    assert 'all_ap' in metrics.read_text()
