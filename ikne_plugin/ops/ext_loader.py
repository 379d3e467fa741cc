"""Loads the compiled extension ``ikne_plugin._ext``, or reports why it cannot.

The ops fall back to their pure-PyTorch references when the extension is
missing; the reason is warned once per process so a slow fallback never goes
unnoticed.
"""
import functools
import importlib
import warnings

import torch


@functools.lru_cache(maxsize=None)
def load_ext():
    """Return the ``ikne_plugin._ext`` module, or None after one warning."""
    try:
        return importlib.import_module('ikne_plugin._ext')
    except ImportError as error:
        warnings.warn(
            f'ikne_plugin._ext could not be imported ({error!r}); the ops run their slower '
            'pure-PyTorch references. Build the extension with '
            '`pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`.',
            RuntimeWarning, stacklevel=3)
        return None


@torch.compiler.assume_constant_result
def ext_available():
    """Whether the extension is there: torch.compile takes the answer as a constant instead
    of tracing the import."""
    return load_ext() is not None
