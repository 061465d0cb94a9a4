"""Peak memory (and time) of evaluating one synthetic video, by length.

    python tools/analysis/video_memory.py --frames 30 300 --dataset \
        [--config configs/rap_sam/eval_rap_sam_yt19.py] [--size 720 1280] \
        [--scale 320 184]
    python tools/analysis/video_memory.py --frames 30 300 [--lazy]

Each length runs in its own process (so peaks don't mix), with random
weights and random frames of --size (720 x 1280 is the YouTube-VIS frame
size, padded to 736 x 1280 by the yt19 pipeline), and prints one row per
length: frames, peak resident memory, seconds, MB per frame over the first
length, the uint8 video's MB, the peak over the first length's and, with
--dataset, the MB of the results' RLE masks (which the metric holds until
it writes the json; random weights make them noise, far larger than a
trained model's).

With --dataset, the real data path: one video of that length is written in
the official YouTube-VIS layout (valid.json with ``annotations: null``,
valid/JPEGImages/<video>/<frame>.jpg) with a seeded checkpoint, and
``tools/test.py CONFIG CKPT`` evaluates it with the config's dataloader (2
persistent workers) and metric; the peak is that of the largest process
(the main one, where the model runs), the time that of the whole command.

Without it, the model's test_step on a video handed over as mmdet's
former pipeline did: all frames, uint8, in one tensor (growing by 2.8 MB
per 736 x 1280 frame); with --lazy, the frames are made when test_step asks
for a clip.
"""
import argparse
import json
import os
import os.path as osp
import resource
import runpy
import signal
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(ROOT, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config',
        default=osp.join(ROOT, 'configs/rap_sam/eval_rap_sam_yt19.py'))
    parser.add_argument(
        '--frames', type=positive_int, nargs='+', default=[5, 15, 30])
    parser.add_argument(
        '--size',
        type=positive_int,
        nargs=2,
        default=[720, 1280],
        metavar=('H', 'W'))
    parser.add_argument('--threads', type=positive_int, default=2)
    parser.add_argument(
        '--lazy',
        action='store_true',
        help='make the frames when test_step asks for a clip')
    parser.add_argument(
        '--dataset',
        action='store_true',
        help='write a YouTube-VIS video and run tools/test.py on it')
    parser.add_argument(
        '--scale',
        type=positive_int,
        nargs=2,
        metavar=('W', 'H'),
        help='with --dataset: the Resize scale instead of the config\'s '
        '(1280, 736), for quicker runs on small frames')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale and not args.dataset:
        parser.error('--scale applies to --dataset runs only')
    if args.lazy and args.dataset:
        parser.error('--lazy applies to runs without --dataset (the '
                     "dataset's loader reads the frames as they are needed)")
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from rap_sam.utils.config_file import read_config  # noqa: E402
from rap_sam.utils.user_errors import (USER_ERROR_EXIT_CODE, UserError,
                                       cli_errors)


def _exit_if_failed(out: subprocess.CompletedProcess, frames: int) -> None:
    """Stop when a run this tool started failed: with that run's one line
    for an input it refused, one line for a run that ran out of memory or
    was killed (the kernel's out-of-memory killer sends SIGKILL), the end of
    its stderr for a crash."""
    if out.returncode == USER_ERROR_EXIT_CODE:
        sys.stderr.write(out.stderr)
        raise SystemExit(out.returncode)
    # numpy's MemoryError, torch's allocator's RuntimeError
    out_of_memory = any(
        text in out.stderr
        for text in ('MemoryError', "can't allocate memory"))
    if out.returncode < 0 or out_of_memory:
        how = ('ran out of memory' if out.returncode > 0 else
               f'was killed by {signal.Signals(-out.returncode).name} (out '
               'of memory, if nobody else sent it)')
        raise UserError(f'The run of {frames} frames {how}: choose fewer '
                        '--frames or a smaller --size.')
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])


class LazyVideo:
    """``[T, 3, H, W]`` uint8 frames made when sliced (frame ``i`` is the
    same random image as in the in-memory video)."""

    def __init__(self, frames, h, w):
        self.shape = (frames, 3, h, w)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        import torch
        return torch.stack([
            frame(i, *self.shape[2:])
            for i in range(*index.indices(self.shape[0]))
        ])


def frame(i, h, w):
    import numpy as np
    import torch
    rng = np.random.default_rng(i)
    return torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8))


def run_one(config, frames, size, threads, lazy):
    import torch
    sys.path.insert(0, ROOT)
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample, TrackDataSample
    from mmengine.config import Config

    import rap_sam  # noqa: F401

    torch.set_num_threads(threads)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.panoptic_head.ov_classifier_name = None  # random classes
    model = MODELS.build(cfg.model).eval()
    h, w = size
    if lazy:
        video = LazyVideo(frames, h, w)
    else:
        video = torch.empty((frames, 3, h, w), dtype=torch.uint8)
        for i in range(frames):
            video[i] = frame(i, h, w)
    samples = [
        DetDataSample(
            metainfo=dict(
                img_id=i,
                frame_id=i,
                video_id=0,
                video_length=frames,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1., 1.))) for i in range(frames)
    ]
    batch = dict(
        inputs=[video],
        data_samples=[TrackDataSample(video_data_samples=samples)])
    start = time.perf_counter()
    with torch.no_grad():
        out = model.test_step(batch)[0]
    seconds = time.perf_counter() - start
    assert len(out) == frames
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            dict(
                frames=frames,
                peak_mb=round(peak_mb),
                seconds=round(seconds, 1))))


def write_video_dataset(root, frames, h, w):
    """One video of ``frames`` random ``h`` x ``w`` JPEGs in the official
    YouTube-VIS 2019 valid layout."""
    import cv2

    from rap_sam.datasets import YOUTUBE_VIS_2019_CLASSES
    name = 'video0001'
    os.makedirs(osp.join(root, 'valid/JPEGImages', name), exist_ok=True)
    file_names = []
    for i in range(frames):
        file_names.append(f'{name}/{5 * i:05d}.jpg')
        image = frame(i, h, w).numpy().transpose(1, 2, 0)
        cv2.imwrite(osp.join(root, 'valid/JPEGImages', file_names[-1]), image)
    with open(osp.join(root, 'valid.json'), 'w') as f:
        json.dump(
            dict(
                videos=[
                    dict(
                        id=1,
                        width=w,
                        height=h,
                        length=frames,
                        file_names=file_names)
                ],
                annotations=None,
                categories=[
                    dict(id=i + 1, name=n, supercategory='object')
                    for i, n in enumerate(YOUTUBE_VIS_2019_CLASSES)
                ]), f)


def run_dataset(config, frames, size, threads, scale=None):
    """tools/test.py on a written video: peak RSS of its largest
    process."""
    import tempfile

    import torch
    sys.path.insert(0, ROOT)
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from rap_sam.testing import randomize_
    with tempfile.TemporaryDirectory() as tmp:
        root = osp.join(tmp, 'data') + '/'
        write_video_dataset(root, frames, *size)
        cfg = Config.fromfile(config)
        cfg.model.backbone.init_cfg = None
        cfg.model.panoptic_head.ov_classifier_name = None  # random classes
        model = MODELS.build(cfg.model)
        randomize_(model, seed=0)
        ckpt = osp.join(tmp, 'random.pth')
        torch.save(dict(state_dict=model.state_dict()), ckpt)
        del model
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        # The valid split written above, whatever split the config reads
        # (the toy config: train.json, whose annotations AP is computed on).
        split = [
            'test_dataloader.dataset.ann_file=valid.json',
            'test_dataloader.dataset.data_prefix.img_path=valid/JPEGImages',
            'test_evaluator.format_only=True'
        ]
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                osp.join(ROOT, 'tools/test.py'), config, ckpt, '--work-dir',
                osp.join(tmp, 'work'), '--cfg-options',
                f'test_dataloader.dataset.data_root={root}', *split,
                'model.panoptic_head.ov_classifier_name=None',
                'model.backbone.init_cfg=None',
                f'test_evaluator.outfile_prefix={tmp}/results'
            ] + ([
                'test_dataloader.dataset.pipeline.0.transforms.1.scale='
                f'({scale[0]},{scale[1]})'
            ] if scale else []),
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env)
        seconds = time.perf_counter() - start
        _exit_if_failed(out, frames)
        with open(osp.join(tmp, 'results.json')) as f:
            results = json.load(f)
        assert all(len(r['segmentations']) == frames for r in results)
        # The results' masks are held until the json is written: with
        # random weights they are noise, far larger than a trained model's.
        results_mb = sum(
            len(rle['counts']) for r in results
            for rle in r['segmentations'] if rle) / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            dict(
                frames=frames,
                peak_mb=round(peak_mb),
                seconds=round(seconds, 1),
                results_mb=round(results_mb))))


def main():
    args = parse_args()
    with cli_errors():
        if args.one and args.dataset:
            return run_dataset(args.config, args.frames[0], args.size,
                               args.threads, args.scale)
        if args.one:
            return run_one(args.config, args.frames[0], args.size,
                           args.threads, args.lazy)
        read_config(args.config)  # a bad one is said before any run
        # On Ctrl+C the runs, in the same process group, get it too.
        measure(args)


def measure(args) -> None:
    """A run per length, one row each."""
    rows = []
    print(f'{"frames":>7} {"peak MB":>9} {"seconds":>9} {"MB/frame":>9} '
          f'{"video MB":>9} {"x first":>8}' +
          (f' {"masks MB":>9}' if args.dataset else ''))
    for frames in args.frames:
        out = subprocess.run(
            [
                sys.executable, __file__, '--one', '--config', args.config,
                '--frames',
                str(frames), '--size', *map(str, args.size), '--threads',
                str(args.threads)
            ] + (['--lazy'] if args.lazy else []) +
            (['--dataset'] if args.dataset else []) +
            (['--scale', *map(str, args.scale)] if args.scale else []),
            capture_output=True,
            text=True,
            env=dict(os.environ))
        _exit_if_failed(out, frames)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        growth, ratio = '', row['peak_mb'] / rows[0]['peak_mb']
        video_mb = 0 if args.lazy or args.dataset else \
            row['frames'] * 3 * args.size[0] * args.size[1] / 2**20
        if len(rows) > 1 and row['frames'] != rows[0]['frames']:
            growth = (row['peak_mb'] - rows[0]['peak_mb']) / (
                row['frames'] - rows[0]['frames'])
            growth = f'{growth:9.1f}'
        print(
            f'{row["frames"]:>7} {row["peak_mb"]:>9} {row["seconds"]:>9} '
            f'{growth:>9} {video_mb:>9.0f} {ratio:>8.2f}' +
            (f' {row["results_mb"]:>9}' if args.dataset else ''),
            flush=True)


if __name__ == '__main__':
    main()
