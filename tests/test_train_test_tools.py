"""tools/train.py, tools/test.py and tools/plot_log.py end to end on tiny synthetic data: train
a few iterations through mmengine's Runner, resume (exactly, after a kill), write checkpoints
atomically, refuse unusable checkpoints, predict identically after a save and load, draw the
curves; and the configs' inheritance."""
import glob
import json
import os
import pickle
import runpy
import shutil

import matplotlib.image
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from _tools import CONFIG, ROOT, make_data_root, one_thread, run_tool, tiny_options  # noqa: F401
from ikne_plugin.utils import UserInputError, setup_runner_cfg

RECORDED_LOSSES = []  # (iteration, loss) of every training iteration, by RecordLossHook
PREDICTIONS = []  # the in-memory model's test predictions at the end of training


class Killed(Exception):
    """Stands for the process being killed."""


@HOOKS.register_module()
class RecordLossHook(Hook):
    """Record each iteration's loss; raise ``Killed`` after iteration ``kill_after``."""

    def __init__(self, kill_after=None):
        self.kill_after = kill_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        RECORDED_LOSSES.append((runner.iter, outputs['loss'].item()))
        if runner.iter == self.kill_after:
            raise Killed


@HOOKS.register_module()
class PredictAfterTrainHook(Hook):
    """Keep the trained in-memory model's predictions on the test set."""

    def after_train(self, runner):
        runner.model.eval()
        loader = Runner.build_dataloader(runner.cfg.test_dataloader, seed=0)
        with torch.no_grad():
            for batch in loader:
                PREDICTIONS.extend(s.pred_pts_seg for s in runner.model.test_step(batch))


def load_tool(name):
    """tools/<name>.py's functions."""
    return runpy.run_path(os.path.join(ROOT, 'tools', f'{name}.py'))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_data_root(tmp_path_factory)


def logged_losses(work_dir):
    """The training losses that mmengine wrote to the runs' JSON-lines scalar logs."""
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

    run_tool('plot_log', work_dir)
    height, width = matplotlib.image.imread(work_dir / 'curves.png').shape[:2]
    assert width > 2 * height > 0  # loss and learning-rate panels side by side


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
    # (fused=True is ours: the same update as one kernel a step)
    assert scannet.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, weight_decay=0.05, fused=True)
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
    # ... and the test pipeline, except MAFT's centring (the synthetic rooms keep raw xyz)
    scannet_test = scannet.test_dataloader.dataset.pipeline
    assert scannet_test[1] == dict(type='CenterScene')
    assert synthetic.test_dataloader.dataset.pipeline == scannet_test[:1] + scannet_test[2:]
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


def config_with_hooks(tmp_path, hooks, name='with_hooks.py'):
    """A config inheriting the synthetic one, with ``hooks`` and deterministic settings."""
    path = tmp_path / name
    path.write_text(f'_base_ = [{CONFIG!r}]\ncustom_hooks = {hooks!r}\n'
                    'randomness = dict(seed=0, deterministic=True)\n')
    return path


def train_losses(config, work_dir, data_root, *extra):
    """The (iteration, loss) pairs of one tools/train.py run (3 epochs of 2 iterations)."""
    RECORDED_LOSSES.clear()
    run_tool('train', config, '--work-dir', work_dir, *extra,
             *tiny_options(data_root, 3, 'train_dataloader.batch_size=1'))
    return list(RECORDED_LOSSES)


def test_resume_after_a_kill_continues_exactly(data_root, tmp_path):
    """Killed in the middle of epoch 3 and resumed from epoch 2's checkpoint, training gives
    the uninterrupted run's losses bit for bit (CPU, fixed seed, deterministic, no workers)."""
    record = dict(type='RecordLossHook')
    config = config_with_hooks(tmp_path, [dict(type='RNGStateHook'), record])
    uninterrupted = train_losses(config, tmp_path / 'a', data_root)
    assert [i for i, _ in uninterrupted] == list(range(6))
    assert len({loss for _, loss in uninterrupted}) == 6  # augmentation varies per iteration

    killing = config_with_hooks(tmp_path, [dict(type='RNGStateHook'),
                                           dict(record, kill_after=4)], 'killing.py')
    with pytest.raises(Killed):
        train_losses(killing, tmp_path / 'b', data_root)
    assert RECORDED_LOSSES == uninterrupted[:5]
    assert not (tmp_path / 'b' / 'epoch_3.pth').exists()
    shutil.copytree(tmp_path / 'b', tmp_path / 'c')

    assert train_losses(config, tmp_path / 'b', data_root, '--resume') == uninterrupted[4:]

    # without the generators' states, the resumed run draws other augmentations
    no_rng = config_with_hooks(tmp_path, [record], 'no_rng.py')
    resumed = train_losses(no_rng, tmp_path / 'c', data_root, '--resume')
    assert [i for i, _ in resumed] == [4, 5] and resumed != uninterrupted[4:]


def test_crash_while_writing_a_checkpoint_leaves_no_truncated_file(data_root, tmp_path,
                                                                    monkeypatch):
    """A failure while epoch 2's checkpoint is being written (here: the flush to disk) leaves
    epoch 1's checkpoint and last_checkpoint as they were and no partial epoch_2.pth; the
    run then resumes from epoch 1."""
    work_dir = tmp_path / 'work'
    fsync = os.fsync

    def failing_fsync(fd):
        if 'epoch_2.pth' in os.readlink(f'/proc/self/fd/{fd}'):
            raise OSError(28, 'No space left on device (injected)')
        fsync(fd)

    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(OSError, match='injected'):
        run_tool('train', CONFIG, '--work-dir', work_dir, *tiny_options(data_root, 2))
    monkeypatch.undo()
    files = [f for f in os.listdir(work_dir) if not f[0].isdigit()]  # not the log folders
    assert sorted(files) == ['epoch_1.pth', 'ikne_trans_synthetic.py', 'last_checkpoint']
    assert (work_dir / 'last_checkpoint').read_text().endswith('epoch_1.pth')
    assert torch.load(work_dir / 'epoch_1.pth', weights_only=True)['meta']['epoch'] == 1

    run_tool('train', CONFIG, '--work-dir', work_dir, '--resume', *tiny_options(data_root, 2))
    assert torch.load(work_dir / 'epoch_2.pth', weights_only=True)['meta']['epoch'] == 2


@pytest.mark.parametrize('case', ['truncated', 'other model', 'weights only'])
def test_resume_refuses_an_unusable_checkpoint(data_root, tmp_path, case):
    """--resume with a truncated checkpoint, another model's, or one without training state
    ends with one message naming the file and the problem, before any training."""
    work_dir = tmp_path / 'work'
    run_tool('train', CONFIG, '--work-dir', work_dir, *tiny_options(data_root, 1))
    ckpt = work_dir / 'epoch_1.pth'
    if case == 'truncated':
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        args, message = ['--resume'], 'cannot read checkpoint .*epoch_1.pth: it is truncated'
    elif case == 'other model':
        ckpt = tmp_path / 'other.pth'
        torch.save(dict(meta=dict(epoch=1, iter=1), optimizer={},
                        state_dict={'backbone.conv.weight': torch.zeros(3)}), ckpt)
        args, message = ['--resume', ckpt], 'checkpoint .*other.pth does not fit this model'
    else:
        state_dict = torch.load(ckpt, weights_only=True)['state_dict']
        ckpt = tmp_path / 'weights.pth'
        torch.save(dict(state_dict=state_dict), ckpt)
        args, message = ['--resume', ckpt], 'checkpoint .*weights.pth is not a training checkpoint'
    with pytest.raises(SystemExit, match='error: ' + message):
        run_tool('train', CONFIG, '--work-dir', work_dir, *args, *tiny_options(data_root, 2))
    assert not (work_dir / 'epoch_2.pth').exists()


def test_train_save_load_test_gives_identical_predictions(data_root, tmp_path):
    """tools/test.py on the saved checkpoint predicts exactly what the trained in-memory model
    predicted (mmdet3d's spconv state-dict patch is active in this process). Every (query,
    class) pair is kept: its score goes through the backbone, the mask path and all heads."""
    config = config_with_hooks(tmp_path, [dict(type='PredictAfterTrainHook')])
    options = tiny_options(data_root, 1, 'model.head.num_layers=3', 'model.head.min_points=0',
                           'model.head.score_thr=-1000')
    PREDICTIONS.clear()
    run_tool('train', config, '--work-dir', tmp_path, *options)
    out = tmp_path / 'predictions.pkl'
    run_tool('test', config, tmp_path / 'epoch_1.pth', '--work-dir', tmp_path, '--out', out,
             *options)
    with open(out, 'rb') as f:
        dumped = [sample['pred_pts_seg'] for sample in pickle.load(f)]
    assert len(dumped) == len(PREDICTIONS) == 1
    for loaded, in_memory in zip(dumped, PREDICTIONS):
        assert len(in_memory.instance_scores.unique()) > 10
        for key in ('pts_instance_mask', 'instance_labels', 'instance_scores'):
            assert torch.equal(loaded[key], in_memory[key]), key


def test_plot_log_merges_a_resumed_run(tmp_path):
    """A resumed run's log entries replace the interrupted run's from where it resumed."""
    def write(run, lines):
        path = tmp_path / run / 'vis_data' / 'scalars.json'
        path.parent.mkdir(parents=True)
        path.write_text(''.join(json.dumps(line) + '\n' for line in lines))

    write('20260101_000000', [dict(step=s, loss=10.0 - s, lr=0.1) for s in (1, 2, 3, 4)]
          + [dict(step=1, all_ap=0.1, **{'all_ap_50%': 0.2, 'all_ap_25%': 0.3})])
    write('20260101_010000', [dict(step=s, loss=5.0 - s / 10, lr=0.05) for s in (3, 4, 5)])
    plot_log = load_tool('plot_log')
    train, val = plot_log['read_scalars'](str(tmp_path))
    assert {s: e['loss'] for s, e in train.items()} == {1: 9.0, 2: 8.0, 3: 4.7, 4: 4.6, 5: 4.5}
    assert list(val) == [1]
    plot_log['plot'](train, val, str(tmp_path / 'curves.png'))
    assert matplotlib.image.imread(tmp_path / 'curves.png').shape[1] > 0
    with pytest.raises(UserInputError, match='no <timestamp>/vis_data/scalars.json'):
        plot_log['read_scalars'](str(tmp_path / 'nothing'))


def test_tensorboard_is_a_config_option(monkeypatch):
    cfg = Config.fromfile(CONFIG)
    assert cfg.tensorboard is False
    assert setup_runner_cfg(cfg.copy(), CONFIG).visualizer.vis_backends == [
        dict(type='LocalVisBackend')]
    cfg.tensorboard = True
    monkeypatch.setattr('importlib.util.find_spec', lambda name: None)
    with pytest.raises(UserInputError, match='tensorboard = True needs the tensorboard package'):
        setup_runner_cfg(cfg.copy(), CONFIG)
    monkeypatch.setattr('importlib.util.find_spec', lambda name: object())
    backends = setup_runner_cfg(cfg.copy(), CONFIG).visualizer.vis_backends
    assert [b['type'] for b in backends] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_tensorboard_events_are_written(data_root, tmp_path):
    work_dir = tmp_path / 'work'
    run_tool('train', CONFIG, '--work-dir', work_dir,
             *tiny_options(data_root, 1, 'tensorboard=True'))
    events = glob.glob(str(work_dir / '*' / 'vis_data' / 'events.out.tfevents.*'))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    scalars = EventAccumulator(events[0]).Reload().Tags()['scalars']
    assert {'loss', 'lr'} <= set(scalars), scalars
