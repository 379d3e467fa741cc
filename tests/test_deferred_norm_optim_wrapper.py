"""DeferredNormOptimWrapper: mmengine's clipping, update and logged gradient norm, with the norm
read to the host only after the optimiser step (no host wait between clipping and the step)."""
import copy
import os

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from _tools import ROOT
from ikne_plugin.utils import DeferredNormOptimWrapper, setup_runner_cfg


def step_with(wrapper_type, model, log):
    """One clipped AdamW step of ``model``; ``log`` gets, at the optimiser's step, whether the
    norm of this step was already logged."""
    hub = MessageHub.get_current_instance()
    hub.update_scalar('train/grad_norm', -1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    wrapper = wrapper_type(optimizer, clip_grad=dict(max_norm=0.5, norm_type=2))
    inner_step = optimizer.step

    def step(*args, **kwargs):
        log.append(hub.get_scalar('train/grad_norm').current() != -1.0)
        return inner_step(*args, **kwargs)

    optimizer.step = step
    g = torch.Generator().manual_seed(0)
    loss = model(torch.randn(16, 5, generator=g, dtype=torch.float64)).square().sum()
    wrapper.update_params(loss)
    return hub.get_scalar('train/grad_norm').current()


def test_same_update_and_norm_as_mmengine_logged_after_the_step():
    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2)).double()
    ref_model = copy.deepcopy(ours_model)
    ours_log, ref_log = [], []
    ours_norm = step_with(DeferredNormOptimWrapper, ours_model, ours_log)
    ref_norm = step_with(OptimWrapper, ref_model, ref_log)
    assert ref_norm > 0.5  # the gradients were clipped
    assert ours_norm == ref_norm
    for ours, ref in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert ref_log == [True] and ours_log == [False]  # mmengine reads the norm before the step


def test_amp_replaces_it_with_mmengines_amp_wrapper():
    config = os.path.join(ROOT, 'configs', 'ikne_trans_scannet.py')
    cfg = Config.fromfile(config)
    assert cfg.optim_wrapper.type == 'DeferredNormOptimWrapper'
    assert setup_runner_cfg(cfg, config, amp=True).optim_wrapper.type == 'AmpOptimWrapper'
