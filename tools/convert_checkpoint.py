"""Convert a checkpoint of the official MAFT or IKNE code into an mmengine checkpoint of ours.

    python tools/convert_checkpoint.py {maft,ikne} IN.pth OUT.pth [--config CONFIG]

IN is what the official code saves (gorilla's {'meta', 'model', 'optimizer', 'scheduler'}, or a
raw state dict, or one under 'net' or 'state_dict'; a DDP 'module.' prefix is stripped). Every
entry is renamed to our names (``ikne_plugin.models.maft_compat``; the layouts are the same,
spconv 2's included) and the result must fit the model of CONFIG exactly (default:
configs/ikne_trans_scannet.py, the released checkpoints' configuration), or nothing is written.
MAFT's criterion constants are not weights: they are compared with CONFIG's criterion and
kept in the output's meta. OUT ({'meta', 'state_dict'}) is written atomically and loads with
``tools/test.py CONFIG OUT``.
"""
import argparse
import io
import os.path as osp

import torch
from mmengine.config import Config
from mmdet3d.registry import MODELS

import ikne_plugin  # noqa: F401  (registers the components)
from ikne_plugin.models.maft_compat import (maft_checkpoint_state_dict, maft_criterion_constants,
                                            maft_to_ikne_state_dict)
from ikne_plugin.utils import (UserInputError, atomic_write, fitting_state_dict, read_checkpoint,
                               run_tool)

DEFAULT_CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs',
                          'ikne_trans_scannet.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Convert an official MAFT/IKNE checkpoint.')
    parser.add_argument('source', choices=['maft', 'ikne'],
                        help='code that wrote IN (the IKNE release uses MAFT\'s model code)')
    parser.add_argument('input', help='checkpoint of the official code')
    parser.add_argument('output', help='mmengine checkpoint to write')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='config whose model the weights must fit (default: %(default)s)')
    return parser.parse_args(argv)


def criterion_report(constants, model):
    """One line on MAFT's criterion constants against the config's criterion."""
    if not constants:
        return 'no criterion constants in the checkpoint'
    criterion = getattr(model.head, 'criterion', None)
    ours = maft_criterion_constants(criterion) if criterion is not None else {}
    differ = [k for k, v in constants.items()
              if k not in ours or ours[k].shape != v.shape or not torch.allclose(ours[k], v.float())]
    if differ:
        return ('warning: criterion constants (training only) differ from the config\'s: ' +
                '; '.join(f'{k} {constants[k].tolist()} vs '
                          f'{ours[k].tolist() if k in ours else "none"}' for k in differ))
    return 'criterion constants (training only) equal the config\'s: ' + ', '.join(constants)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = read_checkpoint(args.input)
    try:
        state_dict, constants = maft_to_ikne_state_dict(maft_checkpoint_state_dict(checkpoint))
    except ValueError as err:
        raise UserInputError(f'{args.input} is not a {args.source.upper()} checkpoint: {err}'
                             ) from None
    model = MODELS.build(Config.fromfile(args.config).model)
    fitting_state_dict(model, state_dict,
                       f'{args.input} (converted from {args.source}, checked against {args.config})')
    meta = dict(converted_from=osp.abspath(args.input), source=args.source,
                config=osp.abspath(args.config),
                maft_criterion={k: v.tolist() for k, v in constants.items()})
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'), dict):
        meta['source_meta'] = checkpoint['meta']
    buffer = io.BytesIO()
    torch.save(dict(meta=meta, state_dict=state_dict), buffer)
    atomic_write(args.output, buffer.getvalue(), mode='wb')
    print(f'{args.input} ({args.source}): {len(state_dict)} entries -> {args.output} '
          f'(fits {args.config}); {criterion_report(constants, model)}')


if __name__ == '__main__':
    run_tool(main)
