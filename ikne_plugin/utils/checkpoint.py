"""Loading checkpoints safely and strictly.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses what
mmengine 0.10.7 puts in its checkpoints besides tensors (its ``HistoryBuffer``, numpy
arrays in the message hub, and references to the buffer's statistics functions, which
unpickle through ``getattr``), so resuming fails. Instead of turning the safety off we
allow-list the plain-data classes and stop pickling the function references.
"""
import os
import pickle
import zipfile

import numpy as np
import torch


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
    """``torch.load`` a checkpoint file, with errors that name the file and the problem."""
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as err:
        raise ValueError(f'cannot read checkpoint {filename}: it is truncated, corrupt or '
                         f'not a torch checkpoint ({type(err).__name__}: {err})') from None


def load_model_checkpoint(model, filename, map_location='cpu'):
    """Load a checkpoint's weights into ``model`` strictly.

    A checkpoint of another model is refused with the missing, unexpected and
    mis-shaped parameter names, instead of loading partially.
    """
    ckpt = read_checkpoint(filename, map_location)
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f'checkpoint {filename} holds no state dict of tensors')
    if hasattr(model, 'module'):
        model = model.module
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mis_shaped = sorted(k for k in set(own) & set(state_dict)
                        if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mis_shaped:
        def listed(names):
            return ', '.join(names[:10]) + (f' ... ({len(names)} in all)' if len(names) > 10 else '')
        problems = [f'{what}: {listed(names)}' for what, names in
                    (('missing', missing), ('unexpected', unexpected),
                     ('shape mismatch', mis_shaped)) if names]
        raise ValueError(f'checkpoint {filename} does not fit this model ('
                         f'{type(model).__name__}); ' + '; '.join(problems))
    model.load_state_dict(state_dict, strict=True)
    return ckpt
