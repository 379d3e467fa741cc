from .atomic_io import atomic_write
from .checkpoint import allow_mmengine_checkpoint_globals, load_model_checkpoint
from .runner_cfg import setup_runner_cfg
from .unknown_type import explain_unknown_type, run_tool

__all__ = ['atomic_write', 'allow_mmengine_checkpoint_globals', 'load_model_checkpoint',
           'setup_runner_cfg', 'explain_unknown_type', 'run_tool']
