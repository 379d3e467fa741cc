"""Time ``segment_mesh`` (C++ kernel and numpy reference) on a mesh, by default ScanNet's
scene0470_00 (the official segmentator takes 0.44 s there on the reference CPU, DESIGN.md 5b).

    python tools/benchmark_segment_mesh.py [--mesh PATH.ply[.gz]] [--official BIN]

A ScanNet-size synthetic room: ``python tools/benchmark_data.py --keep-mesh room.ply``.

Prints the number of segments and the median seconds of a few runs of each; with
``--official`` also times ScanNet's own Segmentator binary (run as ``BIN mesh.ply 0.01 20``,
whole process, PLY reading included) and says whether its partition equals ours.
"""
import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ikne_plugin.datasets.ply import read_ply
from ikne_plugin.ops.ext_loader import load_ext
from ikne_plugin.ops.segment_mesh import segment_mesh, segment_mesh_reference

DEFAULT_MESH = Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'scene0470_00_vh_clean_2.ply.gz'


def median_seconds(fn, repeats):
    """Run ``fn`` ``repeats`` times; return (its last result, the median wall time)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def run_official(binary, ply_path, k_thresh, seg_min_verts, repeats):
    """Time the official tool; return (segIndices of the segs.json it writes, median seconds)."""
    args = [str(binary), str(ply_path), str(k_thresh), str(seg_min_verts)]
    _, seconds = median_seconds(
        lambda: subprocess.run(args, check=True, stdout=subprocess.DEVNULL), repeats)
    segs_json = next(ply_path.parent.glob(ply_path.stem + '.*.segs.json'))
    return np.asarray(json.loads(segs_json.read_text())['segIndices']), seconds


def same_partition(ids_a, ids_b):
    pairs = np.unique(np.stack([ids_a, ids_b], axis=1), axis=0)
    return len(pairs) == len(np.unique(ids_a)) == len(np.unique(ids_b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mesh', type=Path, default=DEFAULT_MESH, help='a .ply or .ply.gz mesh')
    parser.add_argument('--official', type=Path, help="ScanNet's Segmentator binary, to time it too")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--k-thresh', type=float, default=0.01)
    parser.add_argument('--seg-min-verts', type=int, default=20)
    args = parser.parse_args()
    if not args.mesh.is_file():
        parser.error(f'mesh file not found: {args.mesh}')

    with tempfile.TemporaryDirectory() as tmp:
        ply_path = Path(tmp) / args.mesh.name.removesuffix('.gz')
        if args.mesh.suffix == '.gz':
            ply_path.write_bytes(gzip.decompress(args.mesh.read_bytes()))
        else:
            shutil.copyfile(args.mesh, ply_path)
        vertex, faces = read_ply(ply_path)
        vertices = torch.from_numpy(np.stack([vertex['x'], vertex['y'], vertex['z']], axis=1))
        faces = torch.from_numpy(faces)
        print(f'{args.mesh.name}: {len(vertices)} vertices, {len(faces)} faces, '
              f'k_thresh {args.k_thresh}, seg_min_verts {args.seg_min_verts}, '
              f'{torch.get_num_threads()} threads')
        k, m = args.k_thresh, args.seg_min_verts

        rows = []
        if load_ext() is not None:
            ids, seconds = median_seconds(lambda: segment_mesh(vertices, faces, k, m), args.repeats)
            rows.append(('kernel (C++)', ids.numpy(), seconds))
        ids, seconds = median_seconds(lambda: segment_mesh_reference(vertices, faces, k, m),
                                      max(1, args.repeats // 2))
        rows.append(('reference (numpy)', ids.numpy(), seconds))
        if args.official is not None:
            ids, seconds = run_official(args.official.resolve(), ply_path, k, m, args.repeats)
            rows.append(('official tool (process)', ids, seconds))

    first_name, first_ids, _ = rows[0]
    for name, ids, seconds in rows:
        line = f'{name:26s} {len(np.unique(ids)):5d} segments  {seconds:7.3f} s'
        if name != first_name:
            agrees = 'same partition' if same_partition(ids, first_ids) else 'DIFFERENT partition'
            line += f'  ({agrees} as the {first_name})'
        print(line)


if __name__ == '__main__':
    main()
