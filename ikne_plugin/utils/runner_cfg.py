"""The command-line settings that tools/train.py and tools/test.py apply to a config."""
import importlib.util
import os.path as osp

from .user_errors import UserInputError


def setup_runner_cfg(cfg, config_path, work_dir=None, launcher='none', amp=False):
    """Apply work dir, launcher and AMP the way mmdet3d's tools do, make sure
    ``ikne_plugin`` is imported (so its components are registered), and add TensorBoard
    to the visualiser's backends when the config sets ``tensorboard = True``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    cfg.launcher = launcher
    imports = cfg.get('custom_imports', dict(imports=[], allow_failed_imports=False))
    if 'ikne_plugin' not in imports['imports']:
        imports['imports'] = list(imports['imports']) + ['ikne_plugin']
    cfg.custom_imports = imports
    if amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        elif wrapper != 'AmpOptimWrapper':
            raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {wrapper!r}')
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
