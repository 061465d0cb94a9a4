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
(the library runs and reports:
:class:`rap_sam.deploy.benchmark.InferenceBenchmark`):

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
rounds and prints the speed ratios. Freed memory is kept in the process
for every model of the run (glibc; ``--no-tune-malloc`` keeps glibc's
defaults): with the defaults, Mask2Former's 430 MB of fresh masks per
image at 800x1344 took a VM 0.6-6 s to fault in depending on the minute,
and its time varied 2x between runs.

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

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
non_negative_int = CLI['non_negative_int']
positive_int = CLI['positive_int']
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
        type=positive_int,
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
        "prepare(post='half'); with --variants reference alone, half is "
        'timed on the fast mode)')
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
        type=non_negative_int,
        default=None,
        help='untimed runs per variant (default 1 CPU, 5 GPU)')
    parser.add_argument(
        '--repeats',
        type=positive_int,
        default=None,
        help='timed rounds (default 5 CPU, 30 GPU)')
    parser.add_argument(
        '--num-prompts',
        type=positive_int,
        default=1,
        help='clicks per image for --task prompt')
    parser.add_argument(
        '--num-frames',
        type=positive_int,
        default=5,
        help='frames for --task video')
    parser.add_argument(
        '--no-clicks',
        action='store_true',
        help='--task image: skip timing a click on cached features')
    parser.add_argument(
        '--click-repeats',
        type=positive_int,
        default=None,
        help='timed clicks per variant (default --repeats, at least 20)')
    parser.add_argument(
        '--tune-malloc',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='keep freed memory in the process (glibc mallopt), for every '
        "model of the run (default); --no-tune-malloc keeps glibc's "
        "defaults, under which Mask2Former's time varied 2x between runs "
        'on a VM (docs/deploy.md)')
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
    if min(args.shape) < 32:
        parser.error('--shape H W must be at least 32 32')
    return args


if __name__ == '__main__':
    # Before the imports below (torch: seconds): --help and a usage
    # error answer at once.
    parse_args()


def main(argv=None) -> dict:
    args = parse_args(argv)
    import rap_sam  # noqa: F401  (registers the modules)
    from rap_sam.deploy.benchmark import InferenceBenchmark, format_report
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
        benchmark = InferenceBenchmark(
            args.config,
            args.checkpoint,
            task=args.task,
            shape=args.shape,
            device=args.device,
            threads=args.threads,
            variants=args.variants,
            backends=args.backend,
            precisions=args.precision,
            posts=args.post,
            compile=args.compile,
            compare=args.compare,
            calib_dir=args.calib,
            calibration=args.calibration,
            int8_weight_bits=args.int8_weight_bits,
            warmup=args.warmup,
            repeats=args.repeats,
            num_prompts=args.num_prompts,
            num_frames=args.num_frames,
            clicks=not args.no_clicks,
            click_repeats=args.click_repeats,
            tune_malloc=args.tune_malloc,
            flops=not args.no_flops,
            memory=not args.no_memory,
            roofline=not args.no_roofline,
            accuracy=args.accuracy,
            image=args.image,
            seed=args.seed,
            cfg_options=args.cfg_options,
            command=command)
        report = benchmark.run()
        print(format_report(report))
        if args.out:
            write_bytes(
                args.out,
                json.dumps(report, indent=2, default=str).encode('utf-8'))
            print(f'report written to {args.out}')
    return report


if __name__ == '__main__':
    main()
