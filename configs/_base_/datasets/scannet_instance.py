# ScanNet v2 instance segmentation data (18 instance classes, 20 semantic classes), as written by
# `python tools/create_data.py scannet --root dataset/scannetv2 --out data/scannet`.
dataset_type = 'IKNEScanNetDataset'
data_root = 'data/scannet/'
use_dim = [0, 1, 2, 3, 4, 5]  # x, y, z, r, g, b; [0..8] (and with_normals=True) adds normals
with_normals = False

load_points = dict(type='LoadPointsFromFile', coord_type='DEPTH', shift_height=False,
                   load_dim=9, use_dim=use_dim)
load_annotations = dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False,
                        with_mask_3d=True, with_seg_3d=True)

# MAFT's data preparation centres each scene on its mean; then MAFT's training augmentation
# (maft/dataset/scannetv2.py): 3x3 jitter, x flip, z rotation, colour jitter, elastic
# distortion at 2 cm voxels, crop to 250k points.
train_pipeline = [
    load_points,
    dict(type='CenterScene'),
    load_annotations,
    dict(type='LoadSuperPointsFromFile'),
    dict(type='PointSegClassMapping'),
    dict(type='RandomJitterFlipRotate', jitter_std=0.1, flip_x_prob=0.5),
    dict(type='RandomColorShift', std=0.1),
    dict(type='ElasticDistortion', voxel_size=0.02,
         granularity_magnitude=((6, 40), (20, 160))),
    dict(type='ShrinkingWindowCrop', max_npoint=250000),
    dict(type='PackInstanceSegInputs', with_normals=with_normals),
]
# No augmentation and no crop: every vertex is predicted, so AP is benchmark-comparable.
test_pipeline = [
    load_points,
    dict(type='CenterScene'),
    load_annotations,
    dict(type='LoadSuperPointsFromFile'),
    dict(type='PointSegClassMapping'),
    dict(type='PackInstanceSegInputs', with_normals=with_normals),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='scannet_infos_train.pkl', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='scannet_infos_val.pkl', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader

val_evaluator = dict(type='ScanNetInstanceMetric')
test_evaluator = val_evaluator
