"""End-to-end speed and memory of an IKNE model on synthetic ScanNet-size scenes.

    python tools/benchmark.py CONFIG [--device cuda|cpu] [--points 150000] [--batch 4] [--amp]
        [--repeats 10] [--warmup 3] [--json OUT] [--cfg-options key=value ...]

Measures, in one run, with the model built from CONFIG (random weights):

- inference of one scene, end to end: voxelisation, backbone, superpoint pooling, decoder,
  post-processing and the transfer of the predicted masks to the host; next to it the
  backbone alone on the same voxels (the floor);
- a training step at ``--batch`` scenes: forward, matching, losses (IKA/ISG apart), backward
  and the optimiser step (the config's optimiser wrapper); next to it the backbone's forward
  and backward alone on the same batch;
- peak GPU memory of both;
- with ``--amp`` (CUDA only) the same again under mixed precision (the config's optimiser
  wrapper turned into ``AmpOptimWrapper`` by ``setup_runner_cfg``, as ``tools/train.py --amp``
  does: float16 autocast, dynamic loss scale), and how far its outputs are from float32.

Times are medians over ``--repeats`` runs after ``--warmup`` runs. Totals are wall-clock
times with the GPU synchronised before and after; the per-stage breakdown comes from CUDA
events recorded at the stage boundaries by module hooks in the same runs (no extra
synchronisation; perf_counter on the CPU), so the stages add up to the total. On CUDA the
host synchronisations of one training step are counted by place in the code
(``torch.cuda.set_sync_debug_mode``), the GPU's busy time of a run (torch.profiler) is
set against its wall time, and the GPU's idle time in a training step is split by the stage
the host was in meanwhile (where the host, not the GPU, bounds the step). On both devices the
autograd node types of a training step are ranked by their host time, and on CUDA its kernels
and ATen ops by their device time (profiled).

Scenes: the synthetic ScanNet-size scene of every benchmark
(``ikne_plugin.datasets.synthetic_scene``: a room shell and 12 furniture boxes; 150k points
give about 128k voxels at 2 cm and 2.9k superpoints, the sizes of MAFT's measurement in
issue 6), one seed per scene of a batch.
"""
import argparse
import contextlib
import copy
import json
import statistics
import time
import traceback
import warnings

import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample, PointData
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner.amp import autocast

from ikne_plugin.datasets.synthetic_scene import synthetic_scene
from ikne_plugin.datasets.transforms.pack_instance_seg_inputs import PackInstanceSegInputs
from ikne_plugin.ops.ext_loader import load_ext
from ikne_plugin.utils import atomic_write, gpu_busy_ms, setup_runner_cfg

# AMP against float32 on the same weights and inputs: relative L2 error of the decoder's
# final class and mask logits, and relative error of the total training loss.
AMP_TOLERANCE = 2e-2


def scene_inputs(scene, device):
    """(points tensor, ``Det3DDataSample`` with superpoints and GT instances) on ``device``,
    the GT built as ``PackInstanceSegInputs`` builds it for the dataset."""
    points = scene['points']
    superpoints = scene['superpoints']
    sample = Det3DDataSample()
    sample.gt_pts_seg = PointData(sp_pts_mask=torch.from_numpy(superpoints))
    sample.gt_instances_3d = PackInstanceSegInputs.instance_targets(
        points[:, :3], superpoints, int(superpoints.max()) + 1, scene['instance'],
        len(scene['labels']), scene['labels'])
    return torch.from_numpy(points).to(device), sample.to(device)


class StageClock:
    """Stage boundaries of one run, marked by hooks: CUDA events recorded in stream order on
    the GPU (no synchronisation), perf_counter on the CPU. A mark names the stage ending there."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.marks = None  # [(stage, stamp)] while recording
        self.last = []  # the marks of the last recording
        self.to_profiler = False  # also put each mark on torch.profiler's timeline

    def mark(self, stage):
        if self.marks is None:
            return
        if self.to_profiler:
            with torch.profiler.record_function(PROFILER_MARK + stage):
                pass
        if self.cuda:
            stamp = torch.cuda.Event(enable_timing=True)
            stamp.record()
        else:
            stamp = time.perf_counter()
        self.marks.append((stage, stamp))

    @contextlib.contextmanager
    def recording(self):
        self.marks = []
        self.mark('start')
        try:
            yield
        finally:
            self.last, self.marks = self.marks, None

    def stages(self):
        """{stage: ms} of the last recording; a stage met several times is summed."""
        if self.cuda:
            torch.cuda.synchronize()
        out = {}
        for (_, start), (stage, end) in zip(self.last, self.last[1:]):
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1e3
            out[stage] = out.get(stage, 0.0) + ms
        return out


# The name of a stage mark on torch.profiler's timeline, before the stage's name.
PROFILER_MARK = 'stage mark: '


def gpu_idle_by_stage(fn, clock):
    """{stage: ms} of one run of fn() on CUDA: how long the GPU sat idle (no kernel or copy
    running) while the host was in each stage, i.e. where the host (Python, launches, host
    syncs) rather than the GPU bounds the step. From torch.profiler's timeline, whose own
    cost per operator inflates the host's time: it says where, more than how much. None (with
    a note) where the profiler cannot see the GPU."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    clock.to_profiler = True
    try:
        with torch.profiler.profile(activities=activities) as prof, clock.recording():
            fn()
            torch.cuda.synchronize()
    except RuntimeError as error:  # no CUPTI: the figure is missing, the others stand
        print(f'GPU idle time by stage not measured: {error}')
        return None
    finally:
        clock.to_profiler = False
    events = prof.events()
    marks = sorted((e.time_range.start, e.name[len(PROFILER_MARK):]) for e in events
                   if e.name.startswith(PROFILER_MARK))
    # kernels and copies: not the user annotations' spans on the GPU timeline, which cover gaps
    busy = [(e.time_range.start, e.time_range.end) for e in events
            if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation]
    return idle_by_stage(marks, busy)


# torch.profiler's name of the host range in which the autograd engine runs one node.
AUTOGRAD_NODE = 'autograd::engine::evaluate_function: '


def step_profile(fn, device, top=12):
    """Where one run of fn() spends its time, costliest first (torch.profiler, whose own cost
    per operator inflates the host times: it ranks more than it measures):

    - ``nodes``: the autograd node types by host time, ``[{node, count, host_ms, device_ms}]``
      (at most ``top``): a backward bound by the host is bound by its nodes' count times their
      cost, which this prices;
    - on CUDA, ``kernels`` by device time, ``[{kernel, count, device_ms}]``, and the ATen ``ops``
      that launched them by their own device time, told apart by input shapes,
      ``[{op, shapes, count, device_ms}]`` (at most ``2 * top`` each): where the GPU work goes.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=device.type == 'cuda') as prof:
        fn()
        synchronize(device)
    averages = prof.key_averages()
    nodes = sorted((e for e in averages if e.key.startswith(AUTOGRAD_NODE)), key=lambda e: -e.cpu_time_total)
    profile = dict(nodes=[dict(node=e.key[len(AUTOGRAD_NODE):], count=e.count, host_ms=e.cpu_time_total / 1e3,
                               device_ms=e.device_time_total / 1e3) for e in nodes[:top]],
                   kernels=[], ops=[])
    if device.type == 'cuda':
        kernels = sorted((e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA),
                         key=lambda e: -e.device_time_total)
        profile['kernels'] = [dict(kernel=e.key, count=e.count, device_ms=e.device_time_total / 1e3)
                              for e in kernels[:2 * top]]
        ops = sorted((e for e in prof.key_averages(group_by_input_shape=True)
                      if e.device_type == torch.autograd.DeviceType.CPU and e.key.startswith('aten::')),
                     key=lambda e: -e.self_device_time_total)
        profile['ops'] = [dict(op=e.key, shapes=str(e.input_shapes), count=e.count,
                               device_ms=e.self_device_time_total / 1e3) for e in ops[:2 * top]]
    return profile


def idle_by_stage(marks, busy):
    """{stage: idle ms} from ``marks`` [(time, stage ending there)], sorted by time, the first
    being the start, and the device's ``busy`` intervals [(start, end)], times in us."""
    merged = []
    for start, end in sorted(busy):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    idle = {}
    for (begin, _), (end, stage) in zip(marks, marks[1:]):
        covered = sum(max(0, min(e, end) - max(s, begin)) for s, e in merged)
        idle[stage] = idle.get(stage, 0.0) + (end - begin - covered) / 1e3
    return idle


class _MarkAfter:
    """Calls ``fn`` and marks the end of ``stage`` (the matcher is a plain callable)."""

    def __init__(self, fn, clock, stage):
        self.fn, self.clock, self.stage = fn, clock, stage

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        self.clock.mark(self.stage)
        return out


def install_stage_marks(model, clock):
    """Hooks that mark the stages of the IKNE detector and its transformer head; returns a dict
    whose ``backbone_args`` holds the backbone's inputs of the latest call."""
    seen = {}

    def around(module, before, after):
        module.register_forward_pre_hook(lambda *_: clock.mark(before))
        module.register_forward_hook(lambda *_: clock.mark(after))

    model.backbone.register_forward_pre_hook(lambda _, args: seen.__setitem__('backbone_args', args))
    around(model.backbone, 'voxelize', 'backbone')
    around(model.head, 'superpoint pooling', 'decoder')
    criterion = getattr(model.head, 'criterion', None)
    if criterion is not None:
        # The criterion's order: instance assignment and ISG's start, IKA, matching, set losses,
        # ISG's join (on CUDA ISG runs in a worker thread meanwhile: no marks inside it).
        if criterion.ika_loss is not None:
            around(criterion.ika_loss, 'instance assignment', 'IKA loss')
        criterion.matcher = _MarkAfter(criterion.matcher, clock, 'matching')
        criterion.set_losses = _MarkAfter(criterion.set_losses, clock, 'set losses')
        if criterion.isg_loss is not None:
            criterion.register_forward_hook(lambda *_: clock.mark('ISG loss'))
    return seen


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_runs(fn, device, warmup, repeats, clock=None):
    """Median wall ms of fn() (synchronised before and after) and, with a clock, the median
    ms of each stage that the clock's hooks marked."""
    for _ in range(warmup):
        fn()
    walls, stages = [], []
    for _ in range(repeats):
        synchronize(device)
        with clock.recording() if clock else contextlib.nullcontext():
            start = time.perf_counter()
            fn()
            synchronize(device)
            walls.append((time.perf_counter() - start) * 1e3)
        stages.append(clock.stages() if clock else {})
    return statistics.median(walls), {k: statistics.median(s[k] for s in stages) for k in stages[0]}


def peak_gib(fn, device):
    """{peak_memory_gib, peak_reserved_gib}: GPU memory allocated and reserved at most during
    fn() (GiB; None on the CPU). The reserved figure also counts the memory pools of CUDA
    graphs, whose replays allocate nothing (``compile_decoder=dict(mode='reduce-overhead')``)."""
    if device.type != 'cuda':
        return dict(peak_memory_gib=None, peak_reserved_gib=None)
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return dict(peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2**30,
                peak_reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30)


def count_host_syncs(fn):
    """{place in the code: count} of the host synchronisations during fn() on CUDA: the
    innermost caller outside torch of each sync that torch's sync debug mode reports."""
    counts = {}

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1]
                  if '/torch/' not in f.filename and '/warnings.py' not in f.filename]
        where = frames[-1] if frames else None
        key = f'{"/".join(where.filename.split("/")[-3:])}:{where.lineno} {where.name}' if where else filename
        counts[key] = counts.get(key, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter('always')
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode('warn')
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def relative_error(value, reference):
    """||value - reference|| / ||reference|| (L2, in float32)."""
    reference = reference.float()
    return float((value.float() - reference).norm() / reference.norm().clamp_min(1e-12))


def real_mask_logits(preds):
    """The final layer's mask logits of the scenes' real superpoints, flattened (without the
    PAD_LOGIT fill, which would count as exact agreement)."""
    masks = preds['layers'][-1]['mask_logits']
    counts = torch.tensor(preds['sp_counts'], device=masks.device)
    return masks.masked_select(torch.arange(masks.shape[-1], device=masks.device) < counts[:, None, None])


def amp_deviation(model, scene, batch):
    """How far float16 autocast is from float32 on the same weights and inputs: the decoder's
    final-layer outputs of one scene (eval mode) and the total training loss of the batch."""
    points, sample = scene
    model.eval()
    with torch.no_grad():
        ref = model._forward(dict(points=[points]), [sample])
        with autocast(enabled=True):
            amp = model._forward(dict(points=[points]), [sample])
    amp_masks, ref_masks = real_mask_logits(amp), real_mask_logits(ref)
    amp, ref = amp['layers'][-1], ref['layers'][-1]
    out = dict(cls_logits=relative_error(amp['cls_logits'], ref['cls_logits']),
               mask_logits=relative_error(amp_masks, ref_masks),
               scores=relative_error(amp['scores'], ref['scores']),
               centers=relative_error(amp['centers'], ref['centers']),
               mask_sign_agreement=float(((amp_masks > 0) == (ref_masks > 0)).float().mean()))
    model.train()
    with torch.no_grad():
        loss_ref = model.parse_losses(model.loss(*batch))[0]
        with autocast(enabled=True):
            loss_amp = model.parse_losses(model.loss(*batch))[0]
    out['train_loss'] = relative_error(loss_amp, loss_ref)
    out['tolerance'] = AMP_TOLERANCE
    out['within_tolerance'] = all(out[k] <= AMP_TOLERANCE for k in ('cls_logits', 'mask_logits', 'train_loss'))
    return out


def precision(amp):
    """mmengine's autocast (float16 on CUDA, as the Runner's test loop and AmpOptimWrapper
    use it) for ``amp``, else nothing."""
    return autocast(enabled=True) if amp else contextlib.nullcontext()


def measure(model, optim_wrapper, clock, seen, scene, batch, device, args, amp):
    """Inference and training figures of one precision (float32, or float16 autocast)."""
    points, sample = scene

    def infer():
        with torch.no_grad(), precision(amp):
            result = model.predict(dict(points=[points]), [sample])
        clock.mark('post-processing')
        for sample_out in result:
            sample_out.pred_pts_seg.cpu()
        clock.mark('to host')

    def train_step():
        with optim_wrapper.optim_context(model):
            losses = model.loss(*batch)
        loss = model.parse_losses(losses)[0]
        clock.mark('losses')
        optim_wrapper.backward(loss)
        clock.mark('backward')
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        clock.mark('optimizer step')

    model.eval()
    infer_ms, infer_stages = time_runs(infer, device, args.warmup, args.repeats, clock)
    backbone_args = seen['backbone_args']

    def backbone_infer():
        with torch.no_grad(), precision(amp):
            model.backbone(*backbone_args)

    out = dict(inference=dict(
        total_ms=infer_ms, stages_ms=infer_stages,
        backbone_ms=time_runs(backbone_infer, device, args.warmup, args.repeats)[0],
        voxels=len(backbone_args[0]), superpoints=int(sample.gt_pts_seg.sp_pts_mask.max()) + 1,
        **peak_gib(infer, device)))

    model.train()
    step_ms, step_stages = time_runs(train_step, device, args.warmup, args.repeats, clock)
    train_args = seen['backbone_args']

    def backbone_step():
        with precision(amp):
            features = model.backbone(*train_args)
        features.float().sum().backward()
        model.backbone.zero_grad(set_to_none=True)

    profile = step_profile(train_step, device)
    out['train'] = dict(
        step_ms=step_ms, stages_ms=step_stages,
        backbone_fwd_bwd_ms=time_runs(backbone_step, device, args.warmup, args.repeats)[0],
        voxels=len(train_args[0]), **peak_gib(train_step, device),
        autograd_nodes=profile['nodes'], kernels=profile['kernels'], ops=profile['ops'])
    if device.type == 'cuda':
        out['train']['host_syncs'] = count_host_syncs(train_step)
        model.eval()
        out['inference']['gpu_busy_ms'] = gpu_busy_ms(infer)
        model.train()
        out['train']['gpu_busy_ms'] = gpu_busy_ms(train_step)
        out['train']['gpu_idle_by_stage_ms'] = gpu_idle_by_stage(train_step, clock)
    out['ratios'] = dict(
        inference_over_backbone=infer_ms / out['inference']['backbone_ms'],
        step_over_backbone_fwd_bwd=step_ms / out['train']['backbone_fwd_bwd_ms'])
    return out


# Issue 6's goals for ScanNet-size scenes (150k points, batch 4) on the H100.
GOALS = dict(inference_ms=42.0, amp_inference_ms=30.0, step_over_backbone_fwd_bwd=1.5,
             train_peak_memory_gib=10.0)


def print_report(result):
    """The figures as a table."""
    runs = [k for k in ('float32', 'amp') if isinstance(result.get(k), dict)]
    print(f"{result['config']} on {result['device']}: inference 1 scene of {result['points']} points "
          f"({result['float32']['inference']['voxels']} voxels, "
          f"{result['float32']['inference']['superpoints']} superpoints); training batch "
          f"{result['batch']} ({result['float32']['train']['voxels']} voxels); medians of "
          f"{result['repeats']} runs, ms")
    print(f"{'':34}" + ''.join(f'{k:>12}' for k in runs))

    def row(label, get, fmt='{:12.2f}'):
        values = []
        for k in runs:
            try:
                values.append(fmt.format(get(result[k])))
            except (KeyError, TypeError):
                values.append(f"{'-':>12}")
        print(f'{label:34}' + ''.join(values))

    stages = lambda part: list(dict.fromkeys(s for k in runs for s in result[k][part]['stages_ms']))
    row('inference, end to end', lambda r: r['inference']['total_ms'])
    for stage in stages('inference'):
        row(f'  {stage}', lambda r: r['inference']['stages_ms'][stage])
    row('  GPU busy (kernels, copies)', lambda r: r['inference']['gpu_busy_ms'])
    row('backbone alone', lambda r: r['inference']['backbone_ms'])
    row('  ratio end to end / backbone', lambda r: r['ratios']['inference_over_backbone'])
    row('peak memory, GiB', lambda r: r['inference']['peak_memory_gib'])
    row('  reserved', lambda r: r['inference']['peak_reserved_gib'])
    row('training step', lambda r: r['train']['step_ms'])
    for stage in stages('train'):
        row(f'  {stage}', lambda r: r['train']['stages_ms'][stage])
    row('  GPU busy (kernels, copies)', lambda r: r['train']['gpu_busy_ms'])
    row('backbone alone, fwd + bwd', lambda r: r['train']['backbone_fwd_bwd_ms'])
    row('  ratio step / backbone fwd+bwd', lambda r: r['ratios']['step_over_backbone_fwd_bwd'])
    row('peak memory, GiB', lambda r: r['train']['peak_memory_gib'])
    row('  reserved', lambda r: r['train']['peak_reserved_gib'])
    row('host syncs in a step', lambda r: sum(r['train']['host_syncs'].values()), '{:12d}')
    if 'amp_deviation' in result:
        dev = result['amp_deviation']
        print('amp vs float32 (relative L2): ' + ', '.join(
            f'{k} {dev[k]:.2e}' for k in ('cls_logits', 'mask_logits', 'scores', 'centers', 'train_loss'))
            + f"; mask signs agree {dev['mask_sign_agreement']:.4f}; tolerance {dev['tolerance']:.0e}: "
            + ('within' if dev['within_tolerance'] else 'EXCEEDED'))
    for k in runs:
        idle = result[k]['train'].get('gpu_idle_by_stage_ms')
        if idle:
            print(f'GPU idle in one training step ({k}, profiled), by the host\'s stage, ms: '
                  + ', '.join(f'{stage} {ms:.2f}' for stage, ms in idle.items())
                  + f'; total {sum(idle.values()):.2f}')
        print(f'autograd nodes of one training step ({k}, profiled) by host time: ' + '; '.join(
            f"{n['node']} {n['count']}x {n['host_ms']:.2f} ms" for n in result[k]['train']['autograd_nodes']))
        if result[k]['train']['kernels']:
            print(f'kernels of one training step ({k}, profiled) by device time: ' + '; '.join(
                f"{n['kernel'][:100]} {n['count']}x {n['device_ms']:.2f} ms" for n in result[k]['train']['kernels']))
            print(f'ATen ops of one training step ({k}, profiled) by their own device time: ' + '; '.join(
                f"{n['op']} {n['shapes'][:120]} {n['count']}x {n['device_ms']:.2f} ms" for n in result[k]['train']['ops']))
        syncs = result[k]['train'].get('host_syncs')
        if syncs:
            print(f'host syncs of one training step ({k}): ' + '; '.join(f'{n}x {w}' for w, n in syncs.items()))


def parse_args():
    parser = argparse.ArgumentParser(description='End-to-end benchmark of an IKNE model.')
    parser.add_argument('config')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--points', type=int, default=150_000, help='points per scene')
    parser.add_argument('--batch', type=int, default=4, help='scenes per training step')
    parser.add_argument('--amp', action='store_true',
                        help='also measure float16 autocast (CUDA) and its deviation from float32')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.head.num_queries=200')
    args = parser.parse_args()
    if args.amp and args.device != 'cuda':
        parser.error('--amp needs --device cuda (mmengine\'s AmpOptimWrapper is CUDA only)')
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    return args


def main():
    args = parse_args()
    device = torch.device(args.device)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = setup_runner_cfg(cfg, args.config)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    clock = StageClock(device)
    seen = install_stage_marks(model, clock)
    scenes = [scene_inputs(synthetic_scene(args.points, seed), device) for seed in range(args.batch)]
    batch = (dict(points=[p for p, _ in scenes]), [s for _, s in scenes])
    result = dict(config=args.config, device=torch.cuda.get_device_name(device) if device.type == 'cuda'
                  else 'CPU', torch=torch.__version__, extension=load_ext() is not None,
                  points=args.points, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                  goals=GOALS)
    result['float32'] = measure(model, build_optim_wrapper(model, cfg.optim_wrapper), clock, seen,
                                scenes[0], batch, device, args, amp=False)
    if args.amp:
        amp_cfg = setup_runner_cfg(copy.deepcopy(cfg), args.config, amp=True)
        try:
            result['amp'] = measure(model, build_optim_wrapper(model, amp_cfg.optim_wrapper), clock, seen,
                                    scenes[0], batch, device, args, amp=True)
            result['amp_deviation'] = amp_deviation(model, scenes[0], batch)
        except Exception:  # keep the float32 figures; the error goes into the JSON and exit status
            result['amp'] = traceback.format_exc()
    print_report(result)
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + '\n')
        print(f'results written to {args.json}')
    if isinstance(result.get('amp'), str):
        raise SystemExit(f"--amp failed:\n{result['amp']}")


if __name__ == '__main__':
    main()
