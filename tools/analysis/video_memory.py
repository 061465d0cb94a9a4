"""Peak memory (and time) of evaluating one synthetic video, by length.

    python tools/analysis/video_memory.py --frames 5 15 30 300 \
        [--config configs/rap_sam/eval_rap_sam_yt19.py] [--size 720 1280]

Each length runs in its own process (so peaks don't mix) through the
model's test_step with random weights, frames of --size (the YouTube-VIS
frame size, which the yt19 pipeline keeps: 1280x736 padding), and prints one
row per length: frames, peak resident memory, seconds, MB per frame over
the first length.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_one(config, frames, size, threads):
    import numpy as np
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
    rng = np.random.default_rng(0)
    video = torch.from_numpy(
        rng.integers(0, 256, (frames, 3, h, w), dtype=np.uint8))
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config',
        default=osp.join(ROOT, 'configs/rap_sam/eval_rap_sam_yt19.py'))
    parser.add_argument('--frames', type=int, nargs='+', default=[5, 15, 30])
    parser.add_argument(
        '--size', type=int, nargs=2, default=[720, 1280], metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.config, args.frames[0], args.size, args.threads)
    rows = []
    print(f'{"frames":>7} {"peak MB":>9} {"seconds":>9} {"MB/frame":>9}')
    for frames in args.frames:
        out = subprocess.run([
            sys.executable, __file__, '--one', '--config', args.config,
            '--frames',
            str(frames), '--size', *map(str, args.size), '--threads',
            str(args.threads)
        ],
                             capture_output=True,
                             text=True,
                             env=dict(os.environ))
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        growth = ''
        if len(rows) > 1 and row['frames'] != rows[0]['frames']:
            growth = (row['peak_mb'] - rows[0]['peak_mb']) / (
                row['frames'] - rows[0]['frames'])
            growth = f'{growth:9.1f}'
        print(
            f'{row["frames"]:>7} {row["peak_mb"]:>9} {row["seconds"]:>9} '
            f'{growth:>9}',
            flush=True)


if __name__ == '__main__':
    main()
