"""Loading checkpoints safely and strictly.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses what
mmengine 0.10.7 puts in its checkpoints besides tensors (its ``HistoryBuffer``, numpy
arrays in the message hub, and references to the buffer's statistics functions, which
unpickle through ``getattr``), so resuming fails. Instead of turning the safety off we
allow-list the plain-data classes and stop pickling the function references.
"""
import os
import re

import numpy as np
import torch

from .user_errors import UserInputError

# the class named in torch's message when weights_only refuses to unpickle one
_WEIGHTS_ONLY_REFUSAL = re.compile(r'Unsupported global: GLOBAL (\S+)')


def _history_buffer_state(buffer):
    """``HistoryBuffer`` state without its statistics functions, which ``__setstate__``
    restores from the class anyway (only custom registered statistics would be lost)."""
    return {k: v for k, v in buffer.__dict__.items() if k != 'statistics_methods'}


def allow_mmengine_checkpoint_globals():
    """Let ``torch.load(weights_only=True)`` read the checkpoints mmengine writes from now on."""
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
    safe = [HistoryBuffer, np._core.multiarray._reconstruct, np._core.multiarray.scalar,
            np.ndarray, np.dtype]
    safe += [type(np.dtype(t)) for t in ('f2', 'f4', 'f8', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2',
                                         'u4', 'u8', 'bool')]
    torch.serialization.add_safe_globals(safe)


def read_checkpoint(filename, map_location='cpu'):
    """``torch.load`` a checkpoint file safely (``weights_only``), with errors that name the
    file and the problem."""
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        what = 'is a directory, not a file' if os.path.isdir(filename) else 'not found'
        raise FileNotFoundError(f'checkpoint file {what}: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:  # torch.load raises many types (KeyError for a text file)
        refused = _WEIGHTS_ONLY_REFUSAL.search(str(err))
        if refused:
            raise UserInputError(f'cannot read checkpoint {filename} safely: it holds Python '
                                 f'objects beyond tensors and plain data ({refused.group(1)})'
                                 ) from None
        detail = (str(err).splitlines() or [''])[0]  # one line: torch's messages run long
        detail = detail if len(detail) <= 120 else detail[:117] + '...'
        raise UserInputError(f'cannot read checkpoint {filename}: it is truncated, corrupt or '
                             f'not a torch checkpoint ({type(err).__name__}: {detail})') from None


def summarize_names(names, limit=10):
    """The first ``limit`` names, comma-separated, and how many there are in all."""
    names = list(names)
    return ', '.join(names[:limit]) + (f' ... ({len(names)} in all)' if len(names) > limit else '')


def fitting_state_dict(model, ckpt, filename):
    """The state dict of checkpoint ``ckpt`` (read from ``filename``) if it fits ``model``
    exactly; a checkpoint of another model is refused with the missing, unexpected and
    mis-shaped parameter names, instead of loading partially."""
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserInputError(f'checkpoint {filename} holds no state dict of tensors')
    if hasattr(model, 'module'):
        model = model.module
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(k for k in set(own) & set(state_dict)
                        if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mis_shaped:
        problems = [f'{what}: {summarize_names(names)}' for what, names in
                    (('missing', missing), ('unexpected', unexpected),
                     ('shape mismatch', mis_shaped)) if names]
        raise UserInputError(f'checkpoint {filename} does not fit this model ('
                             f'{type(model).__name__}); ' + '; '.join(problems))
    return state_dict


def load_model_checkpoint(model, filename, map_location='cpu'):
    """Load a checkpoint's weights into ``model`` strictly (see :func:`fitting_state_dict`)."""
    ckpt = read_checkpoint(filename, map_location)
    state = fitting_state_dict(model, ckpt, filename)
    (model.module if hasattr(model, 'module') else model).load_state_dict(state, strict=True)
    return ckpt


def check_resume_checkpoint(model, filename):
    """Refuse, before training starts, a checkpoint that ``--resume`` cannot continue from:
    unreadable, of another model, or holding weights only (no epoch and optimizer state).
    mmengine itself would load another model's weights partially (non-strict) or fail
    with a deep traceback."""
    ckpt = read_checkpoint(filename)
    fitting_state_dict(model, ckpt, filename)
    lacking = [k for k in ('meta', 'optimizer') if k not in ckpt]
    if lacking or 'epoch' not in ckpt['meta'] or 'iter' not in ckpt['meta']:
        raise UserInputError(f'checkpoint {filename} is not a training checkpoint (it lacks '
                             f'{lacking or "the epoch and iteration"}): resume needs one '
                             'written by tools/train.py; to start from its weights, use '
                             '--cfg-options load_from=PATH instead')
