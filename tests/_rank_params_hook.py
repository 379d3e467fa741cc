"""Test-only hook for tests/test_distributed.py, imported by the training processes through
the test's config (``custom_imports``): each rank saves its parameters before and after
training, its batch norms' running means, the scenes it trained on and how it was wrapped, so
the test can compare ranks."""
import os

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _params(runner):
    return {name: p.detach().cpu().clone() for name, p in _model(runner).named_parameters()}


def _norm_stats(runner):
    """The running means of the model's batch norms (SyncBN makes them agree across ranks)."""
    return {name: b.cpu().clone() for name, b in _model(runner).named_buffers() if name.endswith('running_mean')}


@HOOKS.register_module()
class SaveRankParamsHook(Hook):
    """Writes ``<work_dir>/rank<r>.pth`` at the end of the run."""

    def before_train(self, runner):
        self.before, self.norm_stats_before = _params(runner), _norm_stats(runner)
        self.scenes = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.scenes.append([s.sample_idx for s in data_batch['data_samples']])

    def after_train(self, runner):
        torch.save(dict(before=self.before, after=_params(runner), norm_stats=_norm_stats(runner),
                        norm_stats_before=self.norm_stats_before, scenes=self.scenes,
                        world_size=get_world_size(), wrapper=type(runner.model).__name__,
                        sync_bn=any(isinstance(m, torch.nn.SyncBatchNorm) for m in runner.model.modules())),
                   os.path.join(runner.work_dir, f'rank{get_rank()}.pth'))
