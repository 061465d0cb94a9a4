#!/usr/bin/env python
"""Speed of RAP-SAM, measured the way a reviewer would.

Every variant runs in the same process on the same preprocessed input,
interleaved (one run of each variant per round) so that load on the machine
falls on all of them alike; the figures are medians over the rounds after a
warm-up. Times are end to end through ``model.predict`` (network and
post-processing; the data preprocessor is not timed), and per stage:
``backbone``, ``neck``, ``head`` (the decoder) and ``post`` (everything
else in ``predict``: mask upsampling and panoptic / instance fusion).

A variant is an inference setting of :func:`rap_sam.deploy.prepare` (the
library, :mod:`rap_sam.deploy.benchmark`, does the measuring):

- ``reference``: what the reference code computes (mmcv's deformable-conv
  kernel, BatchNorms as layers, NCHW, every mask upsampled to full size
  before mmdet's ``MaskFormerFusionHead``);
- ``fast``: BN folded, channels-last, low-rank neck output, gather + GEMM
  deformable conv on CPUs, post-processing that upsamples only the masks it
  needs; exact to float rounding;
- ``fast-bf16``, ``fast-fp16`` (``--precision``): ``fast`` under autocast,
  approximate; ``--accuracy`` reports how far its outputs move;
- ``fast-compile`` (``--compile``): ``fast`` with backbone and neck through
  ``torch.compile``.

``--compare mask2former`` adds mmdet's own Mask2Former R50 panoptic model
(built from the config file shipped with mmdet, random weights) to the same
rounds and prints the speed ratios.

Examples::

    # CPU, the issue's setting (2 threads, 800x1344, random weights)
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --shape 800 1344 --threads 2 --compare mask2former --out bench.json
    # prompt decode after cached features
    python tools/analysis/benchmark.py \\
        configs/rap_sam/eval_rap_sam_prompt.py --task prompt --shape 800 1344
    # GPU, the paper's protocol (batch 1, 800x1333), fp32 and fp16
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --device cuda --precision fp32 fp16 --compare mask2former
"""
import argparse
import json
import os.path as osp
import statistics
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark RAP-SAM (and mmdet Mask2Former) inference',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('Examples::')[-1])
    parser.add_argument('config', help='RAP-SAM config file')
    parser.add_argument('--checkpoint', help='weights (random if omitted)')
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
        help='inference modes timed in fp32 (rap_sam.deploy.prepare)')
    parser.add_argument(
        '--precision',
        '--dtype',
        dest='precision',
        nargs='+',
        default=['fp32'],
        choices=('fp32', 'bf16', 'fp16'),
        help='precisions of the fast mode (bf16 / fp16 = autocast)')
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
        '--tune-malloc',
        action='store_true',
        help='keep freed memory in the process (glibc mallopt); applies '
        'to every model of the run')
    parser.add_argument(
        '--no-flops', action='store_true', help='skip the GFLOPs count')
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the peak-memory run')
    parser.add_argument(
        '--accuracy',
        action='store_true',
        help='compare every variant\'s outputs with the reference\'s')
    parser.add_argument(
        '--image', help='image file (default: demo/demo.jpg, or noise)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the report as JSON here')
    args = parser.parse_args(argv)
    if args.compare and args.task != 'image':
        parser.error('--compare mask2former needs --task image')
    for name in ('warmup', 'repeats', 'num_prompts', 'num_frames'):
        value = getattr(args, name)
        if value is not None and value < (1 if name != 'warmup' else 0):
            parser.error(f'--{name.replace("_", "-")} must be positive')
    if min(args.shape) < 32:
        parser.error('--shape H W must be at least 32 32')
    return args


def format_table(report: dict) -> str:
    names = list(report['variants'])
    keys = ['backbone', 'neck', 'head', 'post', 'e2e']
    if report['task'] == 'prompt':
        keys += ['features', 'decode', 'decode_cached']
    width = max(12, *(len(n) + 2 for n in names))
    lines = [
        'stage (median s)'.ljust(18) + ''.join(n.rjust(width) for n in names)
    ]
    for key in keys:
        row = key.ljust(18)
        for name in names:
            value = report['variants'][name]['median_s'].get(key)
            row += ('-' if value is None else f'{value:.4f}').rjust(width)
        lines.append(row)
    for label, field in (('FPS', 'fps'), ('params (M)', 'params_m'),
                         ('GFLOPs', 'gflops_total'), ('peak mem (MiB)',
                                                      'peak_memory_mb')):
        row = label.ljust(18)
        for name in names:
            value = report['variants'][name].get(field)
            row += ('-' if value is None else (f'{value:.2f}' if isinstance(
                value, float) else str(value))).rjust(width)
        lines.append(row)
    return '\n'.join(lines)


def run(args, command: str) -> dict:
    from rap_sam.deploy import benchmark as bench

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

    base = bench.build_rap_sam(args.config, args.checkpoint, args.seed,
                               notes).to(device)
    img = bench.load_image(args.shape, args.image, args.seed)
    if args.task == 'image':
        raw = bench.image_data(img)
    elif args.task == 'prompt':
        raw = bench.image_data(
            img, bench.click_boxes(*args.shape, args.num_prompts))
    else:
        raw = bench.video_data(img, args.num_frames)

    models = {
        v.name: bench.build_variant(base, v)
        for v in bench.variants(args.variants, args.precision, args.compile)
    }
    if args.compare == 'mask2former':
        models['mask2former'] = bench.build_mask2former(args.seed).to(device)
    runners = {
        name:
        bench.Runner(name, model, bench.preprocess(model, raw, device), device,
                     args.task)
        for name, model in models.items()
    }

    load_before = bench.load_average()
    bench.time_interleaved(list(runners.values()), warmup, repeats)
    load_after = bench.load_average()

    first = next(iter(runners.values()))
    report = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        task=args.task,
        shape=list(args.shape),
        padded_shape=list(first.data['inputs'].shape[-2:]),
        device=str(device),
        warmup=warmup,
        repeats=repeats,
        machine=bench.machine_info(device),
        load_average_before=load_before,
        load_average_after=load_after,
        command=command,
        notes=notes,
        variants={})

    flops = {}
    for name, runner in runners.items():
        med = runner.medians()
        entry = dict(
            median_s=med,
            samples_s=runner.times,
            params_m=round(
                sum(p.numel() for p in models[name].parameters()) / 1e6, 3))
        if args.task == 'prompt':
            decodes = runner.decode_only(repeats)
            med['decode_cached'] = statistics.median(decodes)
            entry['samples_s']['decode_cached'] = decodes
        frames = args.num_frames if args.task == 'video' else 1
        entry['fps'] = frames / med['e2e']
        if not args.no_flops:
            # Counted on the model as built (prepare does not change the
            # arithmetic the counter sees).
            kind = 'mask2former' if name == 'mask2former' else 'rap_sam'
            if kind not in flops:
                inputs = runner.data['inputs']
                if inputs.dim() == 5:
                    inputs = inputs.flatten(0, 1)
                try:
                    flops[kind] = bench.count_flops(
                        models[name] if kind == 'mask2former' else base,
                        inputs, runner.data['data_samples'])
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

    if args.accuracy and 'reference' in runners:
        ref = runners['reference']
        report['accuracy_vs_reference'] = {
            name:
            dict(
                bench.compare_results(runner.last, ref.last),
                **bench.head_output_error(runner.model, ref.model, ref.data))
            for name, runner in runners.items()
            if name not in ('reference', 'mask2former')
        }
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
    print(format_table(report))
    for key, value in report['speedup'].items():
        print(f'speedup {key}: {value:.2f}x')
    for name, acc in report.get('accuracy_vs_reference', {}).items():
        print(f'accuracy {name} vs reference: '
              f'{json.dumps(acc, sort_keys=True)}')


def main(argv=None) -> dict:
    args = parse_args(argv)
    import rap_sam  # noqa: F401  (registers the modules)
    from rap_sam.utils.output_files import make_out_dir, write_bytes
    from rap_sam.utils.user_errors import cli_errors
    command = ' '.join([osp.basename(sys.argv[0])] +
                       (argv if argv is not None else sys.argv[1:]))
    with cli_errors():
        if args.threads:
            torch.set_num_threads(args.threads)
        report = run(args, command)
        print_report(report)
        if args.out:
            make_out_dir(osp.dirname(osp.abspath(args.out)))
            write_bytes(
                args.out,
                json.dumps(report, indent=2, default=str).encode('utf-8'))
            print(f'report written to {args.out}')
    return report


if __name__ == '__main__':
    main()
