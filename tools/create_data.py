"""Convert a raw ScanNet v2 download into the processed files the dataset reads.

    python tools/create_data.py scannet --root dataset/scannetv2 --out data/scannet \
        [--workers N] [--overwrite]

The raw root holds train/, val/ (meshes, segs, aggregations) and test/ (meshes) and
scannetv2-labels.combined.tsv; see ikne_plugin/datasets/scannet_converter.py for the
output. Exits with status 1 and a summary when any scene failed.
"""
import argparse
import sys

from ikne_plugin.datasets.scannet_converter import convert_scannet


def main(argv=None):
    parser = argparse.ArgumentParser(description='Prepare a dataset for IKNE.')
    parser.add_argument('dataset', choices=['scannet'], help='dataset to convert')
    parser.add_argument('--root', required=True, help='raw dataset folder (train/, val/, test/)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes')
    parser.add_argument('--overwrite', action='store_true',
                        help='convert scenes again even if their files exist')
    args = parser.parse_args(argv)
    num_scenes, failures = convert_scannet(args.root, args.out, workers=max(1, args.workers),
                                           overwrite=args.overwrite)
    if failures:
        print(f'{len(failures)} of {num_scenes} scenes failed (the others are converted):',
              file=sys.stderr)
        for failure in failures:
            print('  ' + failure, file=sys.stderr)
        return 1
    print(f'converted {num_scenes} scenes into {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
