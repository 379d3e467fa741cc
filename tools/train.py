"""Train a model from a config with mmengine's Runner (mmdet3d's conventions).

    python tools/train.py configs/ikne_trans_scannet.py [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm]
"""
import argparse
import os

from mmengine.config import Config, DictAction
from mmengine.runner import Runner, find_latest_checkpoint

from ikne_plugin.utils import check_resume_checkpoint, run_tool, setup_runner_cfg


def parse_args():
    parser = argparse.ArgumentParser(description='Train an IKNE model.')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision training (autocast + dynamic loss scale)')
    parser.add_argument('--sync-bn', action='store_true',
                        help='convert BatchNorm layers to SyncBatchNorm (distributed runs)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest '
                        'one in the work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_dataloader.batch_size=2')
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
    if args.sync_bn:
        cfg.sync_bn = 'torch'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    if cfg.resume:  # refuse an unusable checkpoint here, with its name and the problem
        resume_from = cfg.load_from or find_latest_checkpoint(cfg.work_dir)
        if resume_from is not None:
            check_resume_checkpoint(runner.model, resume_from)
    runner.train()


if __name__ == '__main__':
    run_tool(main)
