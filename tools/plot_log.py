"""Draw a training run's curves (losses, learning rate, validation AP) to a PNG.

    python tools/plot_log.py WORK_DIR [--out FILE.png] [--keys loss loss_cls ...]

Reads mmengine's JSON-lines scalar logs, WORK_DIR/<timestamp>/vis_data/scalars.json, of every
run in the work dir in time order: a resumed run's entries replace the interrupted run's
from the step where it resumed. Training entries carry "iter" (losses are mmengine's
running mean over the log window); validation entries carry the AP keys, with "step" the
epoch. Writes WORK_DIR/curves.png by default.
"""
import argparse
import glob
import json
import os.path as osp

from ikne_plugin.utils import UserInputError, run_tool

AP_KEYS = ('all_ap', 'all_ap_50%', 'all_ap_25%')


def read_scalars(work_dir):
    """``(train, val)``: ``{step: entry}`` of the training and validation log entries of all
    runs under ``work_dir``; later runs replace earlier entries from their first step on."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise UserInputError(f'{work_dir}: no <timestamp>/vis_data/scalars.json (mmengine\'s '
                             'scalar log of tools/train.py) found')
    train, val = {}, {}
    for path in paths:
        run_train, run_val = {}, {}
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as error:
                    if line.endswith('\n'):
                        raise UserInputError(f'{path}, line {number}: not JSON ({error})')
                    continue  # the last line of a run killed while writing it
                (run_val if 'all_ap' in entry else run_train)[entry['step']] = entry
        for log, run in ((train, run_train), (val, run_val)):
            if run:  # a resumed run supersedes what the interrupted one logged after its start
                for step in [s for s in log if s >= min(run)]:
                    del log[step]
                log.update(run)
    return dict(sorted(train.items())), dict(sorted(val.items()))


def plot(train, val, out, keys=None):
    """Losses (log scale) and learning rate against the iteration, AP against the epoch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    steps = list(train)
    if keys is None:  # the total and the final decoder layer's losses (no dN. prefix)
        keys = sorted({k for e in train.values() for k in e
                       if k.startswith('loss') and '.' not in k}, key=lambda k: (k != 'loss', k))
    panels = 2 + bool(val)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for key in keys:
        points = [(s, train[s][key]) for s in steps if key in train[s]]
        if points:
            axes[0].plot(*zip(*points), label=key, linewidth=2 if key == 'loss' else 1)
    axes[0].set(xlabel='iteration', ylabel='loss', title='training losses')
    if any(v > 0 for e in train.values() for k, v in e.items() if k in keys):
        axes[0].set_yscale('log')
    axes[0].legend(fontsize=7)
    lr = [(s, train[s]['lr']) for s in steps if 'lr' in train[s]]
    if lr:
        axes[1].plot(*zip(*lr))
    axes[1].set(xlabel='iteration', ylabel='learning rate', title='learning rate')
    if val:
        for key in AP_KEYS:
            points = [(s, e[key]) for s, e in val.items() if key in e]
            axes[2].plot(*zip(*points), marker='o', label=key)
        axes[2].set(xlabel='epoch', ylabel='AP', title='validation AP', ylim=(0, 1))
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description='Plot training curves of a work dir.')
    parser.add_argument('work_dir', help='tools/train.py work dir')
    parser.add_argument('--out', help='PNG to write (default: WORK_DIR/curves.png)')
    parser.add_argument('--keys', nargs='+', help='loss keys to draw (default: the total '
                        'and the last decoder layer\'s losses)')
    args = parser.parse_args()
    train, val = read_scalars(args.work_dir)
    if not train:
        raise UserInputError(f'{args.work_dir}: the logs hold no training entries')
    out = args.out or osp.join(args.work_dir, 'curves.png')
    plot(train, val, out, args.keys)
    print(f'{len(train)} training and {len(val)} validation entries drawn to {out}')


if __name__ == '__main__':
    run_tool(main)
