#!/usr/bin/env python
"""Speed of the post-processing (the fusion head: mask upsampling, panoptic
and instance results), the part every backend shares, on seeded head
outputs: ``objects`` (masks like a trained model's: ellipses of COCO-like
sizes, a few confident queries) and ``random`` (like random weights': every
mask over half the image, no confident query).

Variants run interleaved in one process (medians over the rounds):
``reference`` (mmdet's MaskFormerFusionHead on every mask upsampled),
``full`` (ScoredPanopticFusionHead with bands off) and ``bands`` (as
configured: instance masks computed on the window of rows and columns they
span, when it is at most half the image; the ``bands`` column counts
them; its chunks shared among one-core threads) and ``1 worker`` (the same
with its chunks on the calling thread, each operation on all threads).
``identical`` says every variant's results equal the reference's. ``cpu
full/bands`` is the ratio of the process's CPU times: on a loaded machine,
waiting for a core swamps the wall times; CPU time is the work done.

``--post half`` times the approximate post-processing (``prepare(model,
post='half')``: the fusion at half the result's size) against the exact
one instead, interleaved, with how far its results are from the exact
ones: exact instances (non-empty) kept at IoU >= 0.5 with their label,
their mean mask IoU, panoptic segments kept, pixels of the same panoptic
class.

Example (``--ori-shape``: results resized to a photo's size, as the API,
the demo and COCO evaluation resize them)::

    python tools/analysis/postprocess_benchmark.py --shape 800 1344 \\
        --threads 2 --repeats 9
    python tools/analysis/postprocess_benchmark.py --shape 800 1088 \\
        --ori-shape 480 653 --threads 2 --repeats 9

``--prompts`` times a click's post-processing instead: each non-empty
mask of the outputs as one prompt's, resized to a binary mask on its
window (:meth:`ScoredPanopticFusionHead.binary_masks`) against the
full-size calls, one click at a time.
"""
import argparse
import json
import os
import os.path as osp
import runpy

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(800, 1344),
        metavar=('H', 'W'),
        help='input size, multiples of 4 (default: 800 1344)')
    parser.add_argument(
        '--ori-shape',
        type=int,
        nargs=2,
        default=None,
        metavar=('H', 'W'),
        help='original image size the results are resized to, as a '
        "photo's are (default: the input size, no resize)")
    parser.add_argument(
        '--outputs',
        nargs='+',
        default=['objects', 'random'],
        choices=('objects', 'random'),
        help='kinds of head outputs (default: both)')
    parser.add_argument(
        '--threads', type=int, default=None, help='CPU threads')
    parser.add_argument('--repeats', type=int, default=7, help='timed rounds')
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the report as JSON here')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an earlier --out report (without it the tool refuses '
        'to, before any work)')
    parser.add_argument(
        '--post',
        choices=('half', ),
        help='time this approximate post-processing against the exact one '
        '(and measure how close its results are) instead of the exact '
        "head's variants")
    parser.add_argument(
        '--prompts',
        action='store_true',
        help="time a click's post-processing instead: each mask as one "
        "prompt's, on its window against the full-size calls")
    args = parser.parse_args(argv)
    if args.prompts and args.post:
        parser.error('--prompts times the exact prompt post-processing: '
                     'leave out --post')
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    return args


if __name__ == '__main__':
    # Before the imports below (torch: seconds): --help and a usage error
    # answer at once.
    parse_args()

import torch

from rap_sam.utils.output_files import (check_new_file, check_outputs,
                                        make_out_dir, write_bytes)
from rap_sam.utils.user_errors import cli_errors


def _timed(args, time_fn, **kwargs):
    """``time_fn`` (a timing function of the library) on the options'
    shape, outputs, rounds, seed and original size."""
    return time_fn(
        tuple(args.shape),
        args.outputs,
        repeats=args.repeats,
        warmup=args.warmup,
        seed=args.seed,
        ori_shape=tuple(args.ori_shape) if args.ori_shape else None,
        **kwargs)


def _header(args, what: str, how: str = '') -> list:
    """Print the run's first line (``what`` at the shape, ``how``, threads,
    load); returns the load average."""
    load = os.getloadavg()
    h, w = args.shape
    resized = ''
    if args.ori_shape:
        resized = f' resized to {args.ori_shape[0]}x{args.ori_shape[1]}'
    how = f'{how}, ' if how else ''
    print(f'{what} at {h}x{w}{resized}, {how}{torch.get_num_threads()} '
          f'threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}')
    return list(load)


def _report(args, load: list, results: list, **extra) -> list:
    """Write the ``--out`` report (if asked); returns ``results``."""
    if args.out:
        report = dict(
            shape=list(args.shape),
            ori_shape=list(args.ori_shape or args.shape),
            **extra,
            threads=torch.get_num_threads(),
            load_average=load,
            results=results)
        write_bytes(args.out, json.dumps(report, indent=1).encode('utf-8'))
    return results


def _post(args):
    """``--post``: exact against approximate, timed and compared."""
    from rap_sam.deploy.benchmark import time_post_modes
    results = _timed(args, time_post_modes, post=args.post)
    load = _header(args, 'post-processing', f'exact against {args.post}')
    print(f'{"outputs":<8} {"exact":>8} {args.post:>8} '
          f'{"exact/" + args.post:>10} {"cpu ratio":>9} '
          f'{"instances kept":>14} {"mean IoU":>8} {"segments kept":>13} '
          f'{"panoptic agreement":>18}')
    for r in results:
        t, ins, seg = r['median_s'], r['instances'], r['segments']
        print(f'{r["outputs"]:<8} {t["exact"] * 1e3:>6.1f}ms '
              f'{t["post"] * 1e3:>6.1f}ms {r["speedup"]:>10.2f} '
              f'{r["cpu_speedup"]:>9.2f} '
              f'{ins["kept"]:>7} / {ins["ref"]:<4} {ins["mean_iou"]:>8.4f} '
              f'{seg["kept"]:>6} / {seg["ref"]:<4} '
              f'{r["panoptic_agreement"]:>18.4f}')
    return _report(args, load, results, post=args.post)


def _prompts(args):
    """``--prompts``: a click's mask, on its window and full size."""
    from rap_sam.testing.fusion_outputs import time_prompt_masks
    results = _timed(args, time_prompt_masks)
    load = _header(args, 'prompt masks', 'one click at a time')
    print(f'{"outputs":<8} {"clicks":>6} {"windowed":>8} {"full":>8} '
          f'{"windows":>8} {"full/windows":>12} {"cpu full/windows":>16} '
          f'{"identical":>9}')
    for r in results:
        t, c = r['median_s'], r['median_cpu_s']
        print(f'{r["outputs"]:<8} {r["masks"]:>6} {r["windowed"]:>8} '
              f'{t["full"] * 1e3:>6.2f}ms {t["windows"] * 1e3:>6.2f}ms '
              f'{t["full"] / t["windows"]:>12.2f} '
              f'{c["full"] / c["windows"]:>16.2f} '
              f'{"yes" if r["identical"] else "NO":>9}')
    return _report(args, load, results, prompts=True)


def _heads(args):
    """The exact head's variants (the default run)."""
    from rap_sam.testing.fusion_outputs import time_fusion_heads
    results = _timed(args, time_fusion_heads)
    load = _header(args, 'post-processing')
    print(f'{"outputs":<8} {"segments":>8} {"instances":>9} '
          f'{"bands":>5} {"reference":>10} {"full":>8} {"bands":>8} '
          f'{"full/bands":>10} {"cpu full/bands":>14} '
          f'{"1 worker":>8} {"1 worker/bands":>14} {"identical":>9}')
    for r in results:
        t, c = r['median_s'], r['median_cpu_s']
        print(f'{r["outputs"]:<8} {r["segments"]:>8} {r["instances"]:>9} '
              f'{r["band_queries"]:>5} {t["reference"] * 1e3:>8.1f}ms '
              f'{t["full"] * 1e3:>6.1f}ms {t["bands"] * 1e3:>6.1f}ms '
              f'{t["full"] / t["bands"]:>10.2f} '
              f'{c["full"] / c["bands"]:>14.2f} '
              f'{t["one_worker"] * 1e3:>6.1f}ms '
              f'{t["one_worker"] / t["bands"]:>14.2f} '
              f'{"yes" if r["identical"] else "NO":>9}')
    return _report(args, load, results)


def main(argv=None):
    args = parse_args(argv)
    with cli_errors():
        if args.out:
            # Checked before the timing, not after it: a folder, or an
            # earlier report (replaced without a word before).
            check_new_file(args.out, True, 'JSON')  # folders
            make_out_dir(osp.dirname(osp.abspath(args.out)))
            check_outputs([args.out], [], args.overwrite)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.post:
            return _post(args)
        if args.prompts:
            return _prompts(args)
        return _heads(args)


if __name__ == '__main__':
    main()
