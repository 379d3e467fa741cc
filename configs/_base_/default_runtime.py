# Runtime shared by every IKNE config (mmdet3d's conventions).
default_scope = 'mmdet3d'
custom_imports = dict(imports=['ikne_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # backend 'atomic_local': checkpoints and last_checkpoint are written under a temporary
    # name and renamed, so a crash never leaves a truncated file (ikne_plugin.utils)
    checkpoint=dict(type='CheckpointHook', interval=16, max_keep_ckpts=3,
                    save_best='all_ap', rule='greater', backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'))
# random-generator states in the checkpoints: a resumed run continues the interrupted one's
custom_hooks = [dict(type='RNGStateHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

# Losses, learning rate and validation AP go to <work_dir>/<timestamp>/vis_data/scalars.json
# (JSON lines; tools/plot_log.py draws them). tensorboard = True (in a config or with
# --cfg-options tensorboard=True) also writes TensorBoard events there.
tensorboard = False
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
