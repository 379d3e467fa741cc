"""Evaluate a checkpoint on the config's test set (mmdet3d's conventions).

    python tools/test.py configs/ikne_trans_scannet.py CKPT [--work-dir DIR]
        [--metrics-json FILE] [--out PREDICTIONS.pkl] [--cfg-options key=value ...]
        [--launcher none|pytorch|slurm]

Progress: mmengine logs "Epoch(test) [i/n]" with an ETA every default_hooks.logger.interval
scenes.
"""
import argparse
import json
import os

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.runner import Runner

from ikne_plugin.utils import (UserInputError, atomic_write, load_model_checkpoint, run_tool,
                               setup_runner_cfg)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) an IKNE model.')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--metrics-json', help='also write the metrics to this JSON file')
    parser.add_argument('--out', help='also dump every scene\'s predictions (pred_pts_seg) '
                        'to this .pkl file (mmengine DumpResults)')
    parser.add_argument('--amp', action='store_true', help='mixed precision inference')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. test_dataloader.num_workers=0')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = setup_runner_cfg(cfg, args.config, work_dir=args.work_dir,
                           launcher=args.launcher, amp=args.amp)
    cfg.load_from = None  # loaded strictly below, so a mismatching checkpoint is refused
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserInputError(f'--out {args.out}: the predictions file must end in .pkl')
        evaluators = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluators) if isinstance(evaluators, (list, tuple))
                              else [evaluators]) + [dict(type='DumpResults',
                                                         out_file_path=args.out)]
    runner = Runner.from_cfg(cfg)
    load_model_checkpoint(runner.model, args.checkpoint)
    metrics = runner.test()
    if args.metrics_json and is_main_process():
        text = json.dumps({k: float(v) for k, v in metrics.items()}, indent=2)
        atomic_write(args.metrics_json, text + '\n')
        print(f'metrics written to {args.metrics_json}')


if __name__ == '__main__':
    run_tool(main)
