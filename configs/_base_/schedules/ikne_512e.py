# MAFT's / IKNE's training recipe: AdamW lr 1e-4, wd 0.05, PolyLR (power 0.9) over 512 epochs,
# batch 4, validation every 16 epochs (MAFT's configs/scannet/maft_scannet.yaml).
optim_wrapper = dict(
    # mmengine's OptimWrapper, with the gradient norm logged after the step is queued
    type='DeferredNormOptimWrapper',
    # fused: one multi-tensor kernel a step on CUDA (and on the CPU) instead of foreach's dozens
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, fused=True),
    # MAFT's config names no clipping; we clip at norm 10 (as OneFormer3D does) against loss spikes.
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = dict(type='PolyLR', begin=0, end=512, power=0.9, by_epoch=True)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=512, val_interval=16)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=4)
