"""Random-generator states in checkpoints, so that a resumed run continues as if never stopped.

mmengine re-seeds the generators when a run resumes, so the augmentations drawn after
resuming (``np.random`` in the transforms) repeat the first epoch's instead of continuing
the interrupted run's. This hook stores the states of Python's, numpy's and torch's
generators in every checkpoint and restores them when the runner loads one. Exact on the CPU
with ``num_workers=0`` (or workers that are not persistent: mmengine seeds them alike each
epoch); persistent workers keep their own generators, which no checkpoint holds.
"""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the generators' states with each checkpoint (key ``rng_state``); restore them
    when a checkpoint is loaded by the runner (``resume``, or ``load_from``)."""

    def before_save_checkpoint(self, runner, checkpoint):
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('rng_state')
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available() and \
                len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])
