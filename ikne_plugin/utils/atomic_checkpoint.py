"""Checkpoints written atomically: mmengine's local file backend with ``atomic_write``.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` and ``last_checkpoint`` with
``open(path, 'wb').write(...)``, so a crash or a full disk mid-write leaves a truncated file
under the final name, which ``--resume`` then picks up. The configs select this backend
(``default_hooks.checkpoint.backend_args = dict(backend='atomic_local')``): every file is
written under a temporary name, flushed to disk and renamed, so the final name holds either
the previous file or the whole new one.
"""
from mmengine.fileio import LocalBackend, register_backend

from .atomic_io import atomic_write

ATOMIC_BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose writes (``put``, ``put_text``) are atomic."""

    def put(self, obj, filepath):
        atomic_write(filepath, obj, mode='wb')

    def put_text(self, obj, filepath, encoding='utf-8'):
        atomic_write(filepath, obj.encode(encoding), mode='wb')


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
