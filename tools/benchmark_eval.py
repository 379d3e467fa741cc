"""Time `scannet_instance_eval` on a synthetic ScanNet-val-sized workload.

312 scenes (ScanNet v2 val) of about 150k points with about 30 GT instances and 100
predicted masks each. Points are in runs, as a mesh's vertex order keeps an object's
vertices close (``--shuffle`` spreads them at random: the worst case). To bound memory,
``--distinct`` different scenes are generated and the list repeats them; the evaluation
does the same work for every entry.

    python tools/benchmark_eval.py [--scenes 312] [--distinct 12] [--shuffle]
"""
import argparse
import time

import numpy as np

from ikne_plugin.evaluation.functional import (SCANNET_INSTANCE_CLASS_IDS,
                                               scannet_instance_eval)


def synthetic_scene(rng, shuffle):
    """(gt_ids, prediction) of one scene of 100k..200k points."""
    num_points = int(rng.integers(100_000, 200_000))
    runs = np.split(np.arange(num_points),
                    np.sort(rng.choice(np.arange(1, num_points), 44, replace=False)))
    gt_ids = np.zeros(num_points, np.int64)
    instances = []
    for number, run in enumerate(runs, start=1):
        if number <= 15:  # walls, floor (not evaluated) and unannotated points
            gt_ids[run] = int(rng.choice([0, 1, 2])) * 1000 + number
            continue
        label = int(rng.choice(SCANNET_INSTANCE_CLASS_IDS))
        gt_ids[run] = label * 1000 + number
        instances.append((label, run))

    masks = np.zeros((100, num_points), bool)
    labels = np.empty(100, np.int64)
    for k in range(100):
        if k < 60:  # a noisy copy of a GT instance, sometimes with the wrong class
            labels[k], run = instances[rng.integers(len(instances))]
            masks[k, run[rng.random(len(run)) > rng.uniform(0, 0.3)]] = True
            if rng.random() < 0.2:
                labels[k] = rng.choice(SCANNET_INSTANCE_CLASS_IDS)
        else:  # a false positive somewhere
            labels[k] = rng.choice(SCANNET_INSTANCE_CLASS_IDS)
            start = rng.integers(num_points - 5000)
            masks[k, start:start + rng.integers(100, 5000)] = True
    if shuffle:
        order = rng.permutation(num_points)
        gt_ids, masks = gt_ids[order], masks[:, order]
    return gt_ids, dict(masks=masks, labels=labels, scores=rng.random(100))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scenes', type=int, default=312)
    parser.add_argument('--distinct', type=int, default=12)
    parser.add_argument('--shuffle', action='store_true', help='points in random order')
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pool = [synthetic_scene(rng, args.shuffle) for _ in range(args.distinct)]
    scenes = [pool[i % len(pool)] for i in range(args.scenes)]
    gt_ids, preds = [s[0] for s in scenes], [s[1] for s in scenes]
    num_points = sum(len(g) for g in gt_ids)

    start, start_cpu = time.perf_counter(), time.process_time()
    results = scannet_instance_eval(gt_ids, preds)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    print(f'{args.scenes} scenes, {num_points / args.scenes:,.0f} points and 100 masks a '
          f'scene ({"shuffled" if args.shuffle else "mesh-like runs"}): {seconds:.2f} s '
          f'({cpu_seconds:.2f} s CPU), {1000 * seconds / args.scenes:.1f} ms a scene')
    print(f'all_ap {results["all_ap"]:.4f}  all_ap_50% {results["all_ap_50%"]:.4f}  '
          f'all_ap_25% {results["all_ap_25%"]:.4f}')


if __name__ == '__main__':
    main()
