"""Latency of a prompt call after set_image against a full image call.

    python tools/analysis/prompt_latency.py [--config CFG] [--weights CKPT]
        [--image demo/demo.jpg] [--device cpu] [--runs 5] [--prompts 1 10]

The full call is ``segment_image`` (backbone, neck, decoder, panoptic and
instance post-processing); a prompt call is ``predict_prompts`` on the
features ``set_image`` cached (prompt decoder and masks at the original
size). Both run at the config's test scale (1333 x 800 for COCO). The
target is a prompt call of at most 10% of a full call. Medians of --runs
timed calls after one warm-up call each.
"""
import argparse
import os.path as osp
import runpy
import statistics
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config',
        default=osp.join(REPO, 'configs/rap_sam/eval_rap_sam_coco.py'))
    parser.add_argument('--weights', default=None)
    add_trust_checkpoint(parser)
    parser.add_argument('--image', default=osp.join(REPO, 'demo/demo.jpg'))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--runs', type=positive_int, default=5)
    parser.add_argument(
        '--prompts',
        type=positive_int,
        nargs='+',
        default=[1, 10],
        help='prompt counts to time (clicks on a grid)')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import mmcv
import numpy as np
import torch

from rap_sam.apis import RapSAMPredictor, read_image
from rap_sam.utils.user_errors import cli_errors


def median_seconds(fn, runs: int, device) -> float:
    fn()  # warm-up: lazy initialisation and allocator growth
    times = []
    for _ in range(runs):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        from rap_sam.utils.checkpoint import trust_all_checkpoints
        trust_all_checkpoints()
    with cli_errors():
        return measure(args)


def measure(args) -> float:
    """Print the table; the slowest prompt call's share of the full
    call."""
    img = read_image(args.image)  # a bad one is said before the model loads
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the random-weights banner
        predictor = RapSAMPredictor(args.config, args.weights, args.device)
    h, w = img.shape[:2]
    device = predictor.device

    full = median_seconds(lambda: predictor.segment_image(img), args.runs,
                          device)
    set_image = median_seconds(lambda: predictor.set_image(img), args.runs,
                               device)
    rows = []
    rng = np.random.default_rng(0)
    for count in args.prompts:
        points = rng.uniform([0, 0], [w, h], size=(count, 2))
        prompt = median_seconds(
            lambda: predictor.predict_prompts(points=points), args.runs,
            device)
        rows.append((count, prompt))

    resized = mmcv.rescale_size((w, h), predictor.scale)
    print(f'device: {device} ({torch.get_num_threads()} threads), image '
          f'{w} x {h} resized to {resized[0]} x {resized[1]}, weights: '
          f'{args.weights or "random"}, median of {args.runs} runs')
    print('| call | seconds | share of the full call |')
    print('|---|---|---|')
    print(f'| full image call (segment_image) | {full:.3f} | 100% |')
    print(f'| set_image (backbone + neck, once per image) | {set_image:.3f} '
          f'| {100 * set_image / full:.1f}% |')
    for count, seconds in rows:
        print(f'| predict_prompts, {count} click{"s" * (count > 1)} | '
              f'{seconds:.3f} | {100 * seconds / full:.1f}% |')
    worst = max(s for _, s in rows) / full
    print(f'target (<= 10% of the full call): '
          f'{"met" if worst <= 0.10 else "NOT met"} ({100 * worst:.1f}%)')
    return worst


if __name__ == '__main__':
    main()
