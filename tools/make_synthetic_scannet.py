"""Write procedurally generated rooms in ScanNet v2's raw layout (the embedded demo data).

    python tools/make_synthetic_scannet.py --out DIR --train N --val M [--seed S]
        [--spacing METRES] [--noise METRES]

Then convert them like real ScanNet: python tools/create_data.py scannet --root DIR --out ...
"""
import argparse

from tqdm import tqdm

from ikne_plugin.datasets.synthetic_scannet import make_synthetic_scannet


def main(argv=None):
    parser = argparse.ArgumentParser(description='Make synthetic ScanNet-format scenes.')
    parser.add_argument('--out', required=True, help='output raw root (train/, val/, label map)')
    parser.add_argument('--train', type=int, required=True, help='number of training rooms')
    parser.add_argument('--val', type=int, required=True, help='number of validation rooms')
    parser.add_argument('--seed', type=int, default=0, help='same seed, same files')
    parser.add_argument('--spacing', type=float, default=0.09,
                        help='mesh edge length in metres (0.09: ~15-30k vertices a room)')
    parser.add_argument('--noise', type=float, default=0.003,
                        help='vertex position noise (std) in metres')
    args = parser.parse_args(argv)
    scenes = make_synthetic_scannet(args.out, args.train, args.val, seed=args.seed,
                                    spacing=args.spacing, noise=args.noise,
                                    progress=lambda jobs: tqdm(jobs, desc='rooms'))
    print(f'wrote {len(scenes["train"])} train and {len(scenes["val"])} val rooms to {args.out}')


if __name__ == '__main__':
    main()
