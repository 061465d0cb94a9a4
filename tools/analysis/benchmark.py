#!/usr/bin/env python
"""Speed of RAP-SAM, measured the way a reviewer would.

Every variant runs in the same process on the same preprocessed input,
interleaved (one run of each variant per round) so that load on the machine
falls on all of them alike; the figures are medians over the rounds after a
warm-up. Times are end to end, as ``RapSAMPredictor`` runs an image once
it is read: preprocessing (normalisation and padding), network and
post-processing, and per stage: ``pre``, ``backbone``, ``neck``,
``encoder`` (backbone and neck, or the encoder graph), ``head`` (the
decoder) and ``post`` (mask upsampling and panoptic / instance fusion,
the same torch code for every backend). ``decode_cached`` is one click
(``--task prompt``: the ``--num-prompts`` clicks) decoded on cached
features, post-processing included, split into ``decode_cached_head``
(the head, or the decoder graph) and ``decode_cached_post``.

The roofline (skip it with ``--no-roofline``) states what this machine
allows: ``torch.mm``'s best throughput with the run's threads and device
(fp32, and bf16 / fp16 where asked; measured before and after the timed
rounds), the model's GMAC (the FLOP count,
one multiply-add each), the network's floor per precision (GMAC / peak:
the fastest encoder and decoder can be) and, with ``--compare
mask2former``, the largest speed-up over Mask2Former the floor allows
(Mask2Former's end to end over floor + the variant's measured
preprocessing and post-processing), next to the measured one.

A torch variant is an inference setting of :func:`rap_sam.deploy.prepare`
(the library, :mod:`rap_sam.deploy.benchmark`, does the measuring):

- ``reference``: what the reference code computes (mmcv's deformable-conv
  kernel, BatchNorms as layers, NCHW, every mask upsampled to full size
  before mmdet's ``MaskFormerFusionHead``);
- ``fast``: BN folded, channels-last, low-rank neck output, gather + GEMM
  deformable conv on CPUs, post-processing that upsamples only the masks it
  needs; exact to float rounding;
- ``fast-bf16``, ``fast-fp16`` (``--precision``): ``fast`` under autocast,
  approximate; ``--accuracy`` reports how far its outputs move;
- ``fast-compile`` (``--compile``): ``fast`` with backbone and neck through
  ``torch.compile``;
- ``fast-half``, ``openvino-int8-half`` ... (``--post exact half``): each
  fast and runtime variant also with the approximate post-processing
  (``prepare(post='half')``: the fusion at half the result's size).

``--backend onnxruntime openvino`` adds the model's ONNX export (made in a
temporary folder at the input shape) on each runtime, in each
``--precision``: ``onnxruntime``, ``openvino``, ``openvino-bf16``
(OpenVINO's bf16 inference precision), ``onnxruntime-int8`` and
``openvino-int8`` (the image encoder quantized, static QDQ, calibrated on
``--calib DIR`` or on demo/demo.jpg and scikit-image's sample photos, with
``--calibration`` ranges: ``minmax``, the export tool's default, or
``percentile``, the one within the accuracy goal on the toy model; the
table's ``int8 calibration`` row says which), and ``openvino-int8-bf16``
(the int8 export with OpenVINO's float operations in bf16).
Combinations that cannot run here (ONNX Runtime has no bf16; torch has no
int8; bf16 on a CPU without AVX-512 BF16 / AMX ...) are listed as skipped,
with the reason. Runtime variants are compared with the torch fp32 one
(``agreement``: logits' relative error, panoptic pixels, instances).

``--cfg-options k=v ...`` change the config before RAP-SAM is built, e.g.
``model.neck.dcn_impl=torch`` times the fast modes on a GPU with the
gather + GEMM deformable conv instead of mmcv's kernel (``reference``
keeps mmcv's kernel: that is what it is).

``--compare mask2former`` adds mmdet's own Mask2Former R50 panoptic model
(built from the config file shipped with mmdet, random weights) to the same
rounds and prints the speed ratios.

Examples::

    # CPU, the issue's setting (2 threads, 800x1344, random weights)
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --shape 800 1344 --threads 2 --compare mask2former --out bench.json
    # every backend and precision against Mask2Former, in one run
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --shape 800 1344 --threads 2 --variants fast \\
        --backend torch onnxruntime openvino --precision fp32 bf16 int8 \\
        --compare mask2former --no-memory
    # prompt decode after cached features
    python tools/analysis/benchmark.py \\
        configs/rap_sam/eval_rap_sam_prompt.py --task prompt --shape 800 1344
    # GPU, the paper's protocol (batch 1, 800x1333), fp32 and fp16
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --device cuda --precision fp32 fp16 --compare mask2former
"""
import argparse
import contextlib
import json
import os.path as osp
import runpy
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
parse_with_cfg_options = CLI['parse_with_cfg_options']

#: rap_sam.deploy.quantize's calibrations, written out: importing it would
#: import torch before the arguments are parsed (a test checks they agree).
CALIBRATIONS = ('minmax', 'percentile')
DEFAULT_CALIBRATION = 'minmax'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark RAP-SAM (and mmdet Mask2Former) inference',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('Examples::')[-1])
    parser.add_argument('config', help='RAP-SAM config file')
    parser.add_argument('--checkpoint', help='weights (random if omitted)')
    add_trust_checkpoint(parser, '--checkpoint')
    parser.add_argument(
        '--task', choices=('image', 'video', 'prompt'), default='image')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(800, 1333),
        metavar=('H', 'W'),
        help='input image size (default: 800 1333)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='CPU threads (default: torch default)')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=['reference', 'fast'],
        choices=('reference', 'fast'),
        help='torch inference modes timed in fp32 (rap_sam.deploy.prepare)')
    parser.add_argument(
        '--backend',
        nargs='+',
        default=['torch'],
        choices=('torch', 'onnxruntime', 'openvino'),
        help='where RAP-SAM runs: the torch model, or its ONNX export on '
        'ONNX Runtime / OpenVINO (default: torch)')
    parser.add_argument(
        '--precision',
        '--dtype',
        dest='precision',
        nargs='+',
        default=['fp32'],
        choices=('fp32', 'bf16', 'fp16', 'int8', 'int8-bf16'),
        help='precisions: the torch fast mode (bf16 / fp16 = autocast) and '
        'each runtime (bf16, int8; int8-bf16: the int8 export on openvino '
        'with its float operations in bf16)')
    parser.add_argument(
        '--post',
        nargs='+',
        default=['exact'],
        choices=('exact', 'half'),
        help="post-processings of the fast and runtime variants: exact "
        "(mmdet's results, bit for bit) and half (approximate, opt-in: "
        "prepare(post='half'))")
    parser.add_argument(
        '--calib',
        metavar='DIR',
        help='int8 calibration images (default: demo/demo.jpg and '
        "scikit-image's sample photos, written to a temporary folder)")
    parser.add_argument(
        '--calibration',
        choices=CALIBRATIONS,
        default=DEFAULT_CALIBRATION,
        help='int8 activation ranges, as tools/deploy/export.py takes them: '
        f'{" or ".join(CALIBRATIONS)} (default {DEFAULT_CALIBRATION}, the '
        "export tool's)")
    CLI['add_int8_weight_bits'](parser)
    parser.add_argument(
        '--compile',
        action='store_true',
        help='also time the fast mode with torch.compile')
    parser.add_argument(
        '--compare',
        choices=('mask2former', ),
        default=None,
        help="time mmdet's Mask2Former R50 panoptic in the same rounds "
        '(--task image)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=None,
        help='untimed runs per variant (default 1 CPU, 5 GPU)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed rounds (default 5 CPU, 30 GPU)')
    parser.add_argument(
        '--num-prompts',
        type=int,
        default=1,
        help='clicks per image for --task prompt')
    parser.add_argument(
        '--num-frames', type=int, default=5, help='frames for --task video')
    parser.add_argument(
        '--no-clicks',
        action='store_true',
        help='--task image: skip timing a click on cached features')
    parser.add_argument(
        '--tune-malloc',
        action='store_true',
        help='keep freed memory in the process (glibc mallopt); applies '
        'to every model of the run')
    parser.add_argument(
        '--no-flops', action='store_true', help='skip the GFLOPs count')
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the peak-memory run')
    parser.add_argument(
        '--no-roofline',
        action='store_true',
        help="skip measuring the machine's matrix-multiply peak and the "
        'floor it sets')
    parser.add_argument(
        '--accuracy',
        action='store_true',
        help='compare every variant\'s outputs with the torch fp32 one '
        '(reference if timed, else fast); always done for runtime variants')
    parser.add_argument(
        '--image', help='image file (default: demo/demo.jpg, or noise)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the report as JSON here')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an earlier --out report (without it the tool refuses '
        'to, before any work)')
    args = parse_with_cfg_options(parser, argv, 'model.neck.dcn_impl=torch')
    if args.compare and args.task != 'image':
        parser.error('--compare mask2former needs --task image')
    if args.image is not None and not osp.isfile(args.image):
        parser.error(f'--image {args.image}: no such file')
    for name in ('warmup', 'repeats', 'num_prompts', 'num_frames', 'threads'):
        value = getattr(args, name)
        if value is not None and value < (1 if name != 'warmup' else 0):
            parser.error(f'--{name.replace("_", "-")} must be positive')
    if min(args.shape) < 32:
        parser.error('--shape H W must be at least 32 32')
    return args


if __name__ == '__main__':
    # Before the imports below (torch: seconds): --help and a usage
    # error answer at once.
    parse_args()

import torch


def format_table(report: dict) -> str:
    names = list(report['variants'])
    keys = ['pre', 'backbone', 'neck', 'encoder', 'head', 'post', 'e2e']
    if report['task'] == 'prompt':
        keys += ['features', 'decode']
    keys += [
        k
        for k in ('decode_cached', 'decode_cached_head', 'decode_cached_post')
        if any(k in e['median_s'] for e in report['variants'].values())
    ]
    width = max(12, *(len(n) + 2 for n in names))
    lines = [
        'stage (median s)'.ljust(20) + ''.join(n.rjust(width) for n in names)
    ]
    for key in keys:
        row = key.ljust(20)
        for name in names:
            value = report['variants'][name]['median_s'].get(key)
            row += ('-' if value is None else f'{value:.4f}').rjust(width)
        lines.append(row)
    roof = (report.get('roofline') or {}).get('variants', {})
    rows = [('FPS', 'fps', '.2f'), ('x Mask2Former', 'vs_mask2former', '.2f')]
    if any('max_vs_mask2former' in e for e in roof.values()):
        rows.append(('max x Mask2Former', 'max_vs_mask2former', '.2f'))
    if roof:
        rows += [('network floor (s)', 'floor_s', '.4f'),
                 ('network / floor', 'network_vs_floor', '.2f')]
    if any('calibration' in e for e in report['variants'].values()):
        # int8's accuracy depends on it (docs/deploy.md, Measured accuracy).
        rows.append(('int8 calibration', 'calibration', None))
    rows += [('params (M)', 'params_m', '.2f'),
             ('GFLOPs', 'gflops_total', '.2f'),
             ('peak mem (MiB)', 'peak_memory_mb', '.2f')]
    for label, field, spec in rows:
        row = label.ljust(20)
        for name in names:
            entry = report['variants'][name]
            value = entry.get(field, roof.get(name, {}).get(field))
            row += ('-' if value is None else
                    (format(value, spec)
                     if isinstance(value, float) else str(value))).rjust(width)
        lines.append(row)
    return '\n'.join(lines)


def roofline_lines(roof: dict) -> list:
    """The roofline's measurements and what they allow, in words."""
    lines = []
    for precision, shapes in roof['gmac_per_s'].items():
        each = ', '.join(f'{k}: {v:.1f}' for k, v in shapes.items())
        lines.append(
            f'roofline: torch.mm {precision} on {roof["device"]}, '
            f'threads={roof["threads"]}, best of {roof["repeats"]} (before '
            f'and after the timed rounds): peak '
            f'{roof["peak_gmac_per_s"][precision]:.1f} GMAC/s ({each})')
    for precision, reason in roof['skipped'].items():
        lines.append(f'roofline: no {precision} peak: {reason}')
    if roof['floor_s'] is None:
        lines.append("roofline: the network's floor is unknown: the model's "
                     'GMAC were not counted (--no-flops, or the count '
                     'failed: see the notes)')
        return lines
    floors = ', '.join(f'{v:.4f} s in {p}' for p, v in roof['floor_s'].items())
    lines.append(
        f'roofline: RAP-SAM counts {roof["model_gmac"]:.1f} GMAC (ops the '
        'counter cannot see count zero), so its network (encoder and '
        f'decoder) takes at least {floors} here')
    for name, entry in roof['variants'].items():
        if 'max_vs_mask2former' in entry:
            lines.append(
                f'roofline: {name} can be at most '
                f'{entry["max_vs_mask2former"]:.2f}x Mask2Former end to end '
                f'on this machine (floor {entry["floor_s"]:.4f} s + its '
                'measured pre- and post-processing); measured '
                f'{entry["vs_mask2former"]:.2f}x')
        elif entry['floor_s'] is None:
            lines.append(
                f'roofline: {name}: no floor ({entry["why_no_floor"]})')
    if roof['below_floor']:
        lines.append(
            f'roofline: the network of {", ".join(roof["below_floor"])} ran '
            'faster than the floor: the peak was measured low (other jobs '
            'on the machine), so these bounds are no limits; rerun on an '
            'idle machine')
    return lines


def build_runners(args, bench, base, img, device, notes, work_dir):
    """The runners of this run (torch variants, runtime variants, then
    Mask2Former) and the variants skipped, by name, with the reason."""
    from rap_sam.deploy.backends import DeployedModel
    from rap_sam.deploy.backends.post_processor import RapSAMPostProcessor
    from rap_sam.deploy.prepare import use_post

    boxes = None
    if args.task == 'image':
        raw = bench.image_data(img)
    elif args.task == 'prompt':
        boxes = bench.click_boxes(*args.shape, args.num_prompts)
        raw = bench.image_data(img, boxes)
    else:
        raw = bench.video_data(img, args.num_frames)

    machine = bench.machine_info(device)
    runners, skipped, models = {}, {}, {}
    exports = bench.RuntimeExports(base, args.shape, work_dir, notes,
                                   args.calib, args.calibration,
                                   args.int8_weight_bits)
    posts = {}
    for variant in bench.variants(args.variants, args.precision, args.compile,
                                  args.backend, args.post):
        reason = bench.skip_reason(variant, device, args.task, machine)
        if reason:
            skipped[variant.name] = reason
            continue
        if variant.backend == 'torch':
            model = bench.build_variant(base, variant)
            models[variant.name] = model
            runners[variant.name] = bench.Runner(variant.name, model, raw,
                                                 device, args.task)
            continue
        try:
            folder = exports.folder(variant.precision)
        except bench.ExportFailed as err:
            skipped[variant.name] = str(err)
            continue
        if variant.post not in posts:
            posts[variant.post] = use_post(
                RapSAMPostProcessor.from_model(base), variant.post)
        post = posts[variant.post]
        deployed = DeployedModel(folder, variant.backend, variant.precision,
                                 args.threads)
        models[variant.name] = post
        runners[variant.name] = bench.DeployedRunner(variant.name, deployed,
                                                     post, img, args.task,
                                                     boxes)
    if args.compare == 'mask2former':
        model = bench.build_mask2former(args.seed).to(device)
        models['mask2former'] = model
        runners['mask2former'] = bench.Runner('mask2former', model, raw,
                                              device, args.task)
    for key, seconds in exports.seconds.items():
        notes.append(f'{key} export made in {seconds:.1f} s (not timed)')
    return runners, skipped, models, machine, raw


def run(args, command: str, work_dir: str) -> dict:
    from rap_sam.deploy import benchmark as bench
    from rap_sam.deploy.backends import reads_int8_folder

    device = torch.device(args.device)
    warmup = args.warmup
    if warmup is None:
        warmup = 5 if device.type == 'cuda' else 1
    repeats = args.repeats
    if repeats is None:
        repeats = 30 if device.type == 'cuda' else 5
    notes = []
    if args.tune_malloc:
        ok = bench.tune_cpu_allocator()
        notes.append('glibc allocator tuned (no mmap, no trim): '
                     f'{"accepted" if ok else "refused"}')

    base = bench.build_rap_sam(args.config, args.checkpoint, args.seed, notes,
                               args.cfg_options).to(device)
    img = bench.load_image(args.shape, args.image, args.seed)
    runners, skipped, models, machine, raw = build_runners(
        args, bench, base, img, device, notes, work_dir)
    if not runners:
        from rap_sam.utils.user_errors import UserError
        raise UserError('Nothing to time: every variant asked for is '
                        'skipped here (' +
                        '; '.join(f'{k}: {v}'
                                  for k, v in skipped.items()) + ').')

    rap_sam_runners = [r for n, r in runners.items() if n != 'mask2former']
    # The peak before and after the timed rounds, the best of both: one
    # moment of load would lower it and raise the floor.
    peaks = []
    if not args.no_roofline:
        peaks.append(bench.measure_roofline(device, args.precision))
    load_before = bench.load_average()
    bench.time_interleaved(list(runners.values()), warmup, repeats)
    if args.task == 'prompt':
        bench.time_clicks(rap_sam_runners, None, repeats)
    elif args.task == 'image' and not args.no_clicks:
        bench.time_clicks(rap_sam_runners, bench.click_boxes(*args.shape, 1),
                          repeats)
    load_after = bench.load_average()
    measured = None
    if peaks:
        peaks.append(bench.measure_roofline(device, args.precision))
        measured = bench.best_of_rooflines(peaks)
    cores = machine.get('cpu_cores') or 0
    busiest = max((load_before or [0])[0], (load_after or [0])[0])
    if cores and busiest > cores:
        # Fine-grained parallel work (post-processing: many small ops)
        # suffers most when its threads are descheduled at each barrier.
        notes.append(f'the machine was busy (load average {busiest:.1f} on '
                     f'{cores} cores): times are inflated unevenly, compare '
                     'ratios within a run and rerun when it is idle')

    rap_sam_data = bench.preprocess(base, raw, device)
    report = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        task=args.task,
        shape=list(args.shape),
        padded_shape=list(rap_sam_data['inputs'].shape[-2:]),
        device=str(device),
        warmup=warmup,
        repeats=repeats,
        machine=machine,
        load_average_before=load_before,
        load_average_after=load_after,
        command=command,
        notes=notes,
        skipped=skipped,
        variants={})

    precisions = {
        v.name: v.precision
        for v in bench.variants(args.variants, args.precision, args.compile,
                                args.backend, args.post) if v.name in runners
    }
    flops = {}
    base_params = round(sum(p.numel() for p in base.parameters()) / 1e6, 3)
    for name, runner in runners.items():
        med = runner.medians()
        entry = dict(median_s=med, samples_s=runner.times)
        is_torch = isinstance(runner, bench.Runner)
        if is_torch:
            entry['params_m'] = round(
                sum(p.numel() for p in models[name].parameters()) / 1e6, 3)
        else:
            # The weights exported (BN folded), counted on the model.
            entry['params_m'] = base_params
        frames = args.num_frames if args.task == 'video' else 1
        entry['fps'] = frames / med['e2e']
        if reads_int8_folder(precisions.get(name, '')):
            entry['calibration'] = args.calibration
        if not args.no_flops:
            # Counted on the model as built (prepare and export do not
            # change the arithmetic the counter sees).
            kind = 'mask2former' if name == 'mask2former' else 'rap_sam'
            if kind not in flops:
                model = models[name] if kind == 'mask2former' else base
                data = runner.data if kind == 'mask2former' else rap_sam_data
                inputs = data['inputs']
                if inputs.dim() == 5:
                    inputs = inputs.flatten(0, 1)
                try:
                    flops[kind] = bench.count_flops(model, inputs,
                                                    data['data_samples'])
                except Exception as e:  # noqa: BLE001
                    flops[kind] = None
                    notes.append(f'GFLOPs of {kind} not counted: {e!r}')
            if flops[kind]:
                entry['gflops'] = flops[kind]
                entry['gflops_total'] = flops[kind]['total']
        if not args.no_memory:
            entry['peak_memory_mb'] = bench.peak_memory_mb(runner, device)
        entry['outputs'] = bench.summarise(models[name], runner.last)
        report['variants'][name] = entry
    report['speedup'] = bench.speedups({
        name: e['median_s']
        for name, e in report['variants'].items()
    })
    for name, entry in report['variants'].items():
        ratio = report['speedup'].get(f'{name}_vs_mask2former_e2e')
        if ratio is not None:
            entry['vs_mask2former'] = ratio
    if measured is not None:
        gmac = (flops.get('rap_sam') or {}).get('total')
        report['roofline'] = bench.roofline_bounds(
            measured, gmac, precisions, {
                n: e['median_s']
                for n, e in report['variants'].items()
            })
    if not args.no_memory and any(not isinstance(r, bench.Runner)
                                  for r in runners.values()):
        notes.append('peak memory of runtime variants not measured (the '
                     'torch profiler does not see their allocations)')

    baseline = next((n for n in ('reference', 'fast') if n in runners), None)
    runtimes = [
        n for n, r in runners.items() if not isinstance(r, bench.Runner)
    ]
    if baseline and (args.accuracy or runtimes):
        ref = runners[baseline]
        compared = [
            n for n in runners
            if n not in (baseline,
                         'mask2former') and (args.accuracy or n in runtimes)
        ]
        report['agreement'] = dict(
            baseline=baseline,
            variants={
                name:
                dict(
                    bench.compare_results(runners[name].last, ref.last),
                    **bench.head_output_error(runners[name], ref))
                for name in compared
            })
    elif runtimes:
        notes.append('agreement not measured: time the torch fp32 model too '
                     '(--backend torch, --variants fast)')
    return report


def print_report(report: dict) -> None:
    shape, padded = report['shape'], report['padded_shape']
    print(f'RAP-SAM benchmark: task={report["task"]} input={shape[0]}x'
          f'{shape[1]} (padded {padded[0]}x{padded[1]}) '
          f'device={report["device"]} '
          f'threads={report["machine"]["threads"]} '
          f'warmup={report["warmup"]} repeats={report["repeats"]}')
    print(f'machine: {report["machine"].get("cpu")} '
          f'{report["machine"].get("gpu", "")}; load average before '
          f'{report["load_average_before"]}, after '
          f'{report["load_average_after"]}')
    for note in report['notes']:
        print(f'note: {note}')
    for name, reason in report['skipped'].items():
        print(f'skipped {name}: {reason}')
    print(format_table(report))
    for key, value in report['speedup'].items():
        print(f'speedup {key}: {value:.2f}x')
    if report.get('roofline'):
        print('\n'.join(roofline_lines(report['roofline'])))
    agreement = report.get('agreement')
    if agreement:
        for name, acc in agreement['variants'].items():
            print(f'agreement {name} vs {agreement["baseline"]}: '
                  f'{json.dumps(acc, sort_keys=True)}')


def main(argv=None) -> dict:
    args = parse_args(argv)
    import rap_sam  # noqa: F401  (registers the modules)
    from rap_sam.utils.output_files import (check_new_file, check_outputs,
                                            run_out_dir, write_bytes)
    from rap_sam.utils.user_errors import cli_errors
    command = ' '.join([osp.basename(sys.argv[0])] +
                       (argv if argv is not None else sys.argv[1:]))
    with cli_errors(), contextlib.ExitStack() as stack:
        if args.out:
            # Said before minutes of timing, not after (a folder, or a
            # folder that cannot be written, was found only when the
            # report was written); a folder made here for the report is
            # removed again if the run ends without it.
            check_new_file(args.out, True, 'JSON')  # folders
            check_outputs([args.out], [], args.overwrite)
            stack.enter_context(
                run_out_dir(osp.dirname(osp.abspath(args.out))))
        if args.trust_checkpoint:
            from rap_sam.utils.checkpoint import trust_all_checkpoints
            trust_all_checkpoints()
        if args.threads:
            torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory(prefix='rap_sam_bench_') as work:
            report = run(args, command, work)
        print_report(report)
        if args.out:
            write_bytes(
                args.out,
                json.dumps(report, indent=2, default=str).encode('utf-8'))
            print(f'report written to {args.out}')
    return report


if __name__ == '__main__':
    main()
