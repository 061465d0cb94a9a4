"""Peak memory of one API call: ``segment_image`` on a large image,
``predict_prompts`` with many prompts, or ``segment_video`` on a long video.

    python tools/analysis/api_memory.py image --size 4000 3000 --scale 320
    python tools/analysis/api_memory.py prompts --num 1000 --size 512 512 \
        --batch-size 64
    python tools/analysis/api_memory.py video --frames 600 --size 128 72 \
        [--rle-masks] [--chunk-frames 30]

The video is a camera pan over demo/demo.jpg, made frame by frame as a file
would be read (the input is not held), segmented with the YouTube-VIS
config; every instance is kept (score_thr None).

Random weights and random class embeddings (memory does not depend on
them), one process per call (run it once per setting so peaks don't mix).
Prints the peak resident memory during the call, above what the loaded
model and image already held.
"""
import argparse
import os.path as osp
import resource
import runpy
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_coco.py')
VIDEO_CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_yt19.py')

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('task', choices=['image', 'prompts', 'video'])
    parser.add_argument(
        '--size',
        type=positive_int,
        nargs=2,
        metavar=('W', 'H'),
        default=(512, 512),
        help='image size')
    parser.add_argument(
        '--scale',
        type=positive_int,
        default=None,
        help='the model sees the image resized to fit SCALE x SCALE '
        '(default: the image size)')
    parser.add_argument(
        '--num',
        type=positive_int,
        default=1000,
        help='prompts (task prompts)')
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        default=None,
        help='prompts decoded at a time (default: the predictor\'s)')
    parser.add_argument(
        '--frames',
        type=positive_int,
        default=60,
        help='video frames (task video)')
    parser.add_argument(
        '--chunk-frames',
        type=positive_int,
        default=30,
        help='frames segmented together (task video)')
    parser.add_argument(
        '--rle-masks',
        action='store_true',
        help='segment_video(rle_masks=True) (task video)')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import numpy as np
from mmengine.config import Config

from rap_sam.apis import RapSAMPredictor
from rap_sam.utils.user_errors import UserError, cli_errors


def pan(width: int, height: int, frames: int):
    """``frames`` frames of a pan over demo.jpg, made one at a time."""
    import cv2
    photo = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    photo = cv2.resize(photo, (2 * width, height))
    for t in range(frames):
        x = int(width * (t % 100) / 100)
        yield np.ascontiguousarray(photo[:, x:x + width])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    args = parse_args(argv)
    with cli_errors():
        try:
            measure(args)
        except MemoryError as err:
            raise UserError(f'Out of memory ({err}): choose a smaller '
                            '--size, or fewer --num or --frames.')
        except RuntimeError as err:
            if "can't allocate memory" not in str(err):
                raise
            raise UserError('Out of memory (torch could not allocate '
                            'a tensor): choose a smaller --size, or '
                            'fewer --num or --frames.')


def measure(args) -> None:
    """Make the predictor and the input, run the call, print the line."""
    w, h = args.size
    scale = args.scale or max(w, h)
    cfg = Config.fromfile(VIDEO_CONFIG if args.task == 'video' else CONFIG)
    cfg.model.panoptic_head.ov_classifier_name = None  # random classes
    warnings.simplefilter('ignore')
    # Made first: a size too large for memory is said before the model is
    # built.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    predictor = RapSAMPredictor(
        cfg,
        device='cpu',
        scale=(scale, scale),
        max_pixels=max(w * h, scale * scale),
        prompt_batch_size=args.batch_size or 64)
    if args.task == 'image':
        # A small call first, so that one-off allocations are not counted.
        predictor.segment_image(img[:64, :64])
        before, start = peak_mb(), time.perf_counter()
        result = predictor.segment_image(img)
        what = f'{len(result.pred_instances)} instances'
    elif args.task == 'video':
        predictor.segment_video(pan(w, h, 2), rle_masks=args.rle_masks)
        before, start = peak_mb(), time.perf_counter()
        result = predictor.segment_video(
            pan(w, h, args.frames),
            args.chunk_frames,
            rle_masks=args.rle_masks)
        kept = sum(len(r.pred_track_instances) for r in result)
        what = (f'{args.frames} frames, {kept} instances kept, masks '
                f'{"RLE" if args.rle_masks else "dense"}')
    else:
        predictor.set_image(img)
        predictor.predict_prompts(points=[[1, 1]])
        points = rng.uniform(0, min(w, h), (args.num, 2))
        before, start = peak_mb(), time.perf_counter()
        result = predictor.predict_prompts(points=points)
        masks = result.pred_instances.masks
        what = (f'{args.num} prompts, masks {masks.numel() / 2**20:.0f} MB')
    seconds = time.perf_counter() - start
    print(f'{args.task}: {w} x {h} ({w * h / 1e6:.1f} MP) at scale {scale}: '
          f'peak RSS {peak_mb():.0f} MB, +{peak_mb() - before:.0f} MB over '
          f'the loaded model and image; {what}; {seconds:.1f} s')


if __name__ == '__main__':
    main()
