# IKNE (transformer) on the embedded synthetic ScanNet-format rooms, sized for a 2-core CPU
# (`make demo`). Inherits the ScanNet recipe and shrinks data, model and schedule:
# the rooms' vertices are about 9 cm apart, so voxels are coarser than ScanNet's 2 cm.
_base_ = ['./ikne_trans_scannet.py']

data_root = 'data/synthetic_scannet/'
voxel_size = 0.15

model = dict(
    voxel_size=voxel_size,
    min_spatial_shape=32,
    backbone=dict(channels=(16, 32, 48, 64), num_blocks=1),
    head=dict(
        in_channels=16,
        num_queries=48,
        num_layers=3,
        d_model=64,
        num_heads=4,
        ffn_dim=128,
        rpe_bin_size=0.2,
        criterion=dict(isg_loss=dict(rank=16))))

# No CenterScene here: the rooms' raw coordinates (floor at z = 0, a corner at the origin) are
# informative features. Tuned on 20 rooms of another seed (seed 1; lr 2e-3, 40 train rooms,
# 90 epochs): all_ap_50% 0.534 without centring, 0.415 centring x and y, 0.285 centring x, y, z.
load_points = dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False,
                   load_dim=9, use_dim=[0, 1, 2, 3, 4, 5])
load_scene = [
    load_points,
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False,
         with_mask_3d=True, with_seg_3d=True),
    dict(type='LoadSuperPointsFromFile'),
    dict(type='PointSegClassMapping'),
]
train_pipeline = load_scene + [
    dict(type='RandomJitterFlipRotate', jitter_std=0.1, flip_x_prob=0.5),
    dict(type='RandomColorShift', std=0.1),
    dict(type='PackInstanceSegInputs', with_normals=False),
]
# Batch 2: on the CPU more optimiser steps in the same time learnt faster than batch 4
# (measured on the default val rooms: AP50 0.35 after 70 epochs at batch 2, 0.26 after 60 at
# batch 4; see the README for the figure on fresh rooms).
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
# No validation during training: the demo evaluates the held-out rooms once, with tools/test.py.
val_dataloader = None
val_cfg = None
val_evaluator = None
test_pipeline = load_scene + [dict(type='PackInstanceSegInputs', with_normals=False)]
test_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))

# Tuned on the seed-1 rooms (all_ap_50%): lr 1e-3, 90 epochs 0.446; lr 2e-3, 90 epochs 0.534;
# lr 2e-3, 180 epochs 0.658 (a step takes about 0.17 s on a quiet 2-core machine).
optim_wrapper = dict(optimizer=dict(lr=2e-3))
max_epochs = 180
param_scheduler = dict(end=max_epochs)
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
