"""Write a file so that readers never see it half-written: temporary name, then rename."""
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data, mode='w', fsync=True):
    """Write ``data`` (str, or bytes with ``mode='wb'``) to ``path`` atomically.

    The file gets the usual permissions (0666 less the umask), not ``mkstemp``'s 0600.
    ``fsync=False`` skips flushing to disk, for many small files whose loss in a power cut
    only means writing them again (e.g. a benchmark submission's thousands of masks).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.',
                               suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
