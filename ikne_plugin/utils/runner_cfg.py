"""The command-line settings that tools/train.py and tools/test.py apply to a config."""
import importlib.util
import os.path as osp

import torch

from .user_errors import UserInputError


def setup_runner_cfg(cfg, config_path, work_dir=None, launcher='none', amp=False):
    """Apply work dir, launcher (on CPUs too: gloo) and AMP the way mmdet3d's tools do, make sure
    ``ikne_plugin`` is imported (so its components are registered), and add TensorBoard
    to the visualiser's backends when the config sets ``tensorboard = True``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available():
        _start_cpu_process_group(cfg, launcher, config_path)
    imports = cfg.get('custom_imports', dict(imports=[], allow_failed_imports=False))
    if 'ikne_plugin' not in imports['imports']:
        imports['imports'] = list(imports['imports']) + ['ikne_plugin']
    cfg.custom_imports = imports
    if amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        # (AmpOptimWrapper's loss scaler waits for the GPU in its step anyway: nothing to defer)
        if wrapper in ('OptimWrapper', 'DeferredNormOptimWrapper'):
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        elif wrapper != 'AmpOptimWrapper':
            raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper or DeferredNormOptimWrapper, '
                             f'got {wrapper!r}')
        for loop in ('val_cfg', 'test_cfg'):  # mmengine's Val/TestLoop autocast with fp16=True
            if cfg.get(loop) is not None:
                cfg[loop]['fp16'] = True
    if cfg.get('tensorboard', False):
        if importlib.util.find_spec('tensorboard') is None:
            raise UserInputError(f'{config_path}: tensorboard = True needs the tensorboard '
                                 'package (pip install tensorboard), which is not installed')
        backends = cfg.visualizer.setdefault('vis_backends', [])
        if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
    return cfg


def _start_cpu_process_group(cfg, launcher, config_path):
    """Distributed runs without CUDA (e.g. a test of DDP on the CPU): mmengine's launchers call
    ``torch.cuda.set_device``, which a CPU-only torch lacks, and wrap the model in DDP with
    ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU model. So the gloo process group
    is started here from torchrun's environment (mmengine then skips its own start), and the
    wrapper gets no device ids (otherwise mmengine's default wrapper arguments)."""
    if launcher != 'pytorch':
        raise UserInputError(f'{config_path}: --launcher {launcher} needs CUDA GPUs; without '
                             'them only --launcher pytorch (torchrun, gloo backend) runs')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'  # for the log
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group('gloo')
