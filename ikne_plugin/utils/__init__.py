from .atomic_checkpoint import ATOMIC_BACKEND, AtomicLocalBackend
from .atomic_io import atomic_write
from .background_call import BackgroundCall
from .checkpoint import (allow_mmengine_checkpoint_globals, check_resume_checkpoint,
                         fitting_state_dict, load_model_checkpoint, read_checkpoint)
from .deferred_norm_optim_wrapper import DeferredNormOptimWrapper
from .gpu_busy import gpu_busy_ms, gpu_time_by_kernel, total_ms
from .rng_state_hook import RNGStateHook
from .runner_cfg import setup_runner_cfg
from .unknown_type import explain_unknown_type
from .user_errors import UserInputError, run_tool, user_error_message

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'atomic_write', 'BackgroundCall',
           'allow_mmengine_checkpoint_globals', 'check_resume_checkpoint', 'fitting_state_dict',
           'load_model_checkpoint', 'read_checkpoint', 'DeferredNormOptimWrapper', 'gpu_busy_ms',
           'gpu_time_by_kernel', 'total_ms', 'RNGStateHook', 'setup_runner_cfg', 'explain_unknown_type',
           'UserInputError', 'run_tool', 'user_error_message']
