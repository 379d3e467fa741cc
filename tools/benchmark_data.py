"""Time the data path on one core: conversion and training transforms.

    python tools/benchmark_data.py [--vertices 150000] [--repeat 5] [--keep-mesh PLY]

Synthesises a ScanNet-size room (about 150k vertices, 300k faces) and reports the
seconds to convert it (``convert_scene``, labelled split) and the milliseconds of the
training transform chain per scene (and per transform). Goals: conversion <= 2 s,
training transforms <= 150 ms per scene. Superpoints are timed by
``tools/benchmark_segment_mesh.py`` (against ScanNet's own segmentator); ``--keep-mesh``
saves the synthetic room's mesh for it.
"""
import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ[_var] = '1'  # one core, set before numpy and torch load their thread pools

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmdet3d.registry import TRANSFORMS  # noqa: E402

import ikne_plugin.datasets  # noqa: E402,F401  (registers the transforms)
from ikne_plugin.datasets.label_map import (LABEL_MAP_FILE, SEG_VALID_CLASS_IDS,  # noqa: E402
                                            VALID_CLASS_IDS, read_label_map,
                                            seg_label_mapping)
from ikne_plugin.datasets.scannet_converter import convert_scene, scene_outputs  # noqa: E402
from ikne_plugin.datasets.scannet_raw import MESH_SUFFIX  # noqa: E402
from ikne_plugin.datasets.synthetic_scannet import (  # noqa: E402
    generate_room, make_synthetic_scannet, write_room)

TRAIN_PIPELINE = [
    dict(type='LoadPointsFromFile', coord_type='DEPTH', load_dim=9, use_dim=[0, 1, 2, 3, 4, 5]),
    dict(type='CenterScene'),
    dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_mask_3d=True,
         with_seg_3d=True),
    dict(type='LoadSuperPointsFromFile'),
    dict(type='PointSegClassMapping'),
    dict(type='RandomJitterFlipRotate'),
    dict(type='RandomColorShift'),
    dict(type='ElasticDistortion'),
    dict(type='ShrinkingWindowCrop', max_npoint=250000),
    dict(type='PackInstanceSegInputs'),
]


def scannet_size_room(raw_root, vertices):
    """Write one synthetic room of about ``vertices`` vertices as train/scene0000_00."""
    make_synthetic_scannet(raw_root, 0, 0)  # just the label map
    spacing = 0.09
    for _ in range(3):  # vertex count ~ spacing^-2; a few corrections hit the target
        room = generate_room(np.random.default_rng([0, 0]), spacing)
        spacing *= np.sqrt(len(room['xyz']) / vertices)
    write_room(os.path.join(raw_root, 'train'), 'scene0000_00', room)
    return len(room['xyz']), len(room['faces'])


def best_of(repeat, fn):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--vertices', type=int, default=150000)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--keep-mesh', help='copy the synthetic room mesh (binary PLY) here')
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    work = tempfile.mkdtemp(prefix='ikne_bench_')
    try:
        raw, out = os.path.join(work, 'raw'), os.path.join(work, 'out')
        num_vertices, num_faces = scannet_size_room(raw, args.vertices)
        print(f'scene: {num_vertices} vertices, {num_faces} faces (one core)')
        label_map_path = os.path.join(raw, LABEL_MAP_FILE)
        label_map = read_label_map(label_map_path)
        convert = lambda: convert_scene(raw, out, 'train', 'scene0000_00', label_map,  # noqa: E731
                                        label_map_path, overwrite=True)
        best, median = best_of(args.repeat, convert)
        print(f'conversion: {best:.3f} s best, {median:.3f} s median  (goal <= 2 s)')

        paths = scene_outputs(out, 'train', 'scene0000_00')
        transforms = [TRANSFORMS.build(t) for t in TRAIN_PIPELINE]
        per_transform = np.zeros(len(transforms))

        def chain():
            results = dict(lidar_points=dict(lidar_path=paths['pts']),
                           pts_semantic_mask_path=paths['pts_semantic_mask'],
                           pts_instance_mask_path=paths['pts_instance_mask'],
                           super_pts_path=paths['sp_pts_mask'],
                           seg_label_mapping=seg_label_mapping(),
                           seg_valid_class_ids=SEG_VALID_CLASS_IDS,
                           valid_class_ids=VALID_CLASS_IDS)
            for i, t in enumerate(transforms):
                start = time.perf_counter()
                results = t(results)
                per_transform[i] += time.perf_counter() - start
        np.random.seed(0)
        best, median = best_of(args.repeat, chain)
        print(f'training transforms: {best * 1e3:.0f} ms best, {median * 1e3:.0f} ms median '
              'per scene  (goal <= 150 ms)')
        for t, seconds in zip(TRAIN_PIPELINE, per_transform / args.repeat):
            print(f'    {t["type"]:<24} {seconds * 1e3:7.1f} ms')

        if args.keep_mesh:
            shutil.copyfile(os.path.join(raw, 'train', 'scene0000_00' + MESH_SUFFIX),
                            args.keep_mesh)
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
