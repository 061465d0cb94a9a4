"""Click-to-track accuracy: mean per-frame IoU of prompted objects' tracks.

    python tools/analysis/track_prompt_eval.py CONFIG CHECKPOINT \
        --data-root DIR [--ann-file valid.json] [--img-prefix valid/JPEGImages]
        [--toy-videos N] [--seed S] [--prompt-frame first|last]
        [--scale W H] [--chunk-frames N] [--out FILE [--overwrite]]
        [--cfg-options k=v ...]

Every object of a YouTube-VIS format annotation file is prompted by one
click on the first frame it appears in (``--prompt-frame last``: the last,
so the track runs backward; its mask's point farthest from the border, as
the click mIoU metric clicks) and followed through its video
with ``RapSAMPredictor.track_prompt``; each of the video's frames scores
the IoU of the tracked mask with the object's ground truth there (1 when
both are empty). Prints the mean over all (object, frame) pairs, on the
prompted frames and on the others, and writes the per-object figures to
``--out`` (json; an existing file is replaced only with ``--overwrite``).

``--toy-videos N`` first writes N toy videos unseen in training (the toy
recipe's generator, tools/make_toy_data.py, with another seed) as
``DIR/valid.json`` and ``DIR/valid/JPEGImages``. The toy model's run:

    python tools/toy_train_eval.py --root work_dirs/toy
    python tools/analysis/track_prompt_eval.py \
        configs/rap_sam/toy_eval_yt19.py work_dirs/toy/train/epoch_18.pth \
        --data-root work_dirs/toy/data/youtube_vis_val --toy-videos 24 \
        --cfg-options model.panoptic_head.ov_classifier_dir=work_dirs/toy/embd
"""
import argparse
import json
import os.path as osp
import runpy
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
for path in (REPO, osp.join(REPO, 'tools')):
    if path not in sys.path:
        sys.path.insert(0, path)

#: Seed of the toy validation videos (the toy training videos use 1).
TOY_VAL_SEED = 1000

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # mmengine's config module, not rap_sam (torch): under a second.
    from mmengine.config import DictAction
    parser.add_argument('config', help='a video config (RapSAMVideo)')
    parser.add_argument('checkpoint')
    add_trust_checkpoint(parser, 'CHECKPOINT')
    parser.add_argument(
        '--data-root', required=True, help='the YouTube-VIS folder')
    parser.add_argument(
        '--ann-file',
        default='valid.json',
        help='annotation file under --data-root (default valid.json)')
    parser.add_argument(
        '--img-prefix',
        default='valid/JPEGImages',
        help='frame folder under --data-root (default valid/JPEGImages)')
    parser.add_argument(
        '--toy-videos',
        type=positive_int,
        metavar='N',
        help='first write N toy videos unseen in training under --data-root')
    parser.add_argument(
        '--seed',
        type=int,
        default=TOY_VAL_SEED,
        help=f'seed of the toy videos (default {TOY_VAL_SEED})')
    parser.add_argument(
        '--prompt-frame',
        choices=['first', 'last'],
        default='first',
        help='click each object on the first (default) or last frame it is '
        'in')
    parser.add_argument(
        '--scale',
        type=positive_int,
        nargs=2,
        metavar=('W', 'H'),
        help="resize scale (default: the config's test scale)")
    parser.add_argument('--chunk-frames', type=positive_int, default=30)
    parser.add_argument('--out', help='per-object results (json)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing --out (without it the tool refuses to)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import numpy as np
import pycocotools.mask as mask_util

from rap_sam.utils.output_files import check_outputs, make_out_dir, write_bytes
from rap_sam.utils.user_errors import UserError, cli_errors


def decode(segmentation, height: int, width: int) -> np.ndarray:
    """A YouTube-VIS frame's mask (RLE, compressed or not, or polygons;
    None where the object is absent) as a bool ``[H, W]`` array."""
    if segmentation is None:
        return np.zeros((height, width), bool)
    if isinstance(segmentation, list):  # polygons
        rle = mask_util.merge(
            mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get('counts'), list):
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_util.decode(rle).astype(bool)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0  # both empty: the object is rightly absent
    return float(np.logical_and(pred, gt).sum() / union)


def _require(entry: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise KeyError(missing[0])


def read_annotations(path: str) -> dict:
    """Videos by id and the objects of a YouTube-VIS annotation file, each
    object's video listed and one segmentation per frame of it."""
    if not osp.isfile(path):
        raise UserError(f'Annotation file not found: {path} (give '
                        '--data-root and --ann-file, or --toy-videos N to '
                        'write toy videos there).')
    try:
        with open(path) as f:
            ann = json.load(f)
        videos = {v['id']: v for v in ann['videos']}
        objects = ann['annotations']
        for video in videos.values():
            _require(video, 'width', 'height', 'file_names')
        for obj in objects or ():
            _require(obj, 'id', 'category_id', 'video_id', 'segmentations')
            if obj['video_id'] not in videos:
                raise ValueError(f'annotation {obj["id"]} is of video '
                                 f'{obj["video_id"]}, which is not listed')
            frames = len(videos[obj['video_id']]['file_names'])
            if len(obj['segmentations']) != frames:
                raise ValueError(
                    f'annotation {obj["id"]} has '
                    f'{len(obj["segmentations"])} segmentations for '
                    f'{frames} frames')
    except (ValueError, KeyError, TypeError) as err:
        what = f'no {err}' if isinstance(err, KeyError) else str(err)
        raise UserError(f'{path} is not a YouTube-VIS annotation file '
                        f'(videos, and annotations with a segmentation per '
                        f'frame of their video): {what}.')
    if not objects:
        raise UserError(f'{path} has no annotations to prompt.')
    return dict(videos=videos, objects=objects)


def evaluate_video(predictor,
                   frames,
                   video: dict,
                   objects: list,
                   chunk_frames: int,
                   prompt_frame: str = 'first') -> list:
    """Per object: its prompted frame (the first or the last it is in),
    click, per-frame IoUs and the match IoU. Objects prompted on the same
    frame are prompted together (one click each, one object each)."""
    from rap_sam.datasets.transforms import farthest_point
    height, width = video['height'], video['width']
    by_frame = {}
    for obj in objects:
        masks = [decode(s, height, width) for s in obj['segmentations']]
        present = [t for t, m in enumerate(masks) if m.any()]
        if present:
            frame = present[0 if prompt_frame == 'first' else -1]
            by_frame.setdefault(frame, []).append((obj, masks))
    records = []
    for frame, group in sorted(by_frame.items()):
        clicks = [farthest_point(masks[frame]) for _, masks in group]
        results = predictor.track_prompt(
            frames, frame, points=clicks, chunk_frames=chunk_frames)
        for i, (obj, masks) in enumerate(group):
            pred = [
                r.pred_track_instances.masks[i].cpu().numpy() for r in results
            ]
            track = results[0].pred_track_instances
            records.append(
                dict(
                    video_id=video['id'],
                    annotation_id=obj['id'],
                    category_id=obj['category_id'],
                    frame=frame,
                    click=[int(c) for c in clicks[i]],
                    match_iou=round(float(track.match_ious[i]), 4),
                    ious=[
                        round(mask_iou(p, g), 4) for p, g in zip(pred, masks)
                    ]))
    return records


def summary(records: list) -> dict:
    pairs = [(r['frame'] == t, iou) for r in records
             for t, iou in enumerate(r['ious'])]
    prompted = [iou for on, iou in pairs if on]
    others = [iou for on, iou in pairs if not on]
    return dict(
        objects=len(records),
        frames=len(pairs),
        mean_iou=float(np.mean([iou for _, iou in pairs])),
        prompted_frame_iou=float(np.mean(prompted)),
        other_frames_iou=float(np.mean(others)) if others else None,
        match_iou=float(np.mean([r['match_iou'] for r in records])))


def check_out(path: str, overwrite: bool) -> None:
    """Refuse, before any work, an --out that cannot be written or that
    would replace a file without --overwrite."""
    if osp.isdir(path):
        raise UserError(f'--out {path} is a folder: give a file name, e.g. '
                        f'{osp.join(path, "track_prompt_eval.json")}.')
    make_out_dir(osp.dirname(osp.abspath(path)))
    check_outputs([path], [], overwrite)


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        from rap_sam.utils.checkpoint import trust_all_checkpoints
        trust_all_checkpoints()
    with cli_errors('nothing was written to --out'):
        return evaluate(args)


def evaluate(args) -> dict:
    from make_toy_data import make_toy_ytvis

    from rap_sam.apis import RapSAMPredictor, read_image
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.runner_cli import (merge_model_options,
                                          unexpected_options)
    if args.out:
        check_out(args.out, args.overwrite)
    if osp.isfile(args.data_root):
        raise UserError(f'--data-root {args.data_root} is a file: give the '
                        'folder that holds the annotation file and frames.')
    split = args.ann_file.rsplit('.', 1)[0]
    if args.toy_videos and args.img_prefix != f'{split}/JPEGImages':
        raise UserError('--toy-videos writes NAME.json and NAME/JPEGImages: '
                        f'give --img-prefix {split}/JPEGImages.')
    ann_file = osp.join(args.data_root, args.ann_file)
    # Without toy videos to write, a bad file is said before the model is
    # built.
    ann = None if args.toy_videos else read_annotations(ann_file)
    cfg = read_config(args.config)
    merge_model_options(cfg, args.cfg_options)
    with warnings.catch_warnings(), unexpected_options(args.cfg_options):
        warnings.simplefilter('ignore')
        predictor = RapSAMPredictor(
            cfg,
            args.checkpoint,
            'cpu',
            scale=tuple(args.scale) if args.scale else None)
    if args.toy_videos:
        make_toy_ytvis(args.data_root, args.toy_videos, args.seed, split)
        ann = read_annotations(ann_file)
    objects = {}
    for obj in ann['objects']:
        objects.setdefault(obj['video_id'], []).append(obj)
    start, records = time.time(), []
    for video_id, video_objects in sorted(objects.items()):
        video = ann['videos'][video_id]
        frames = [
            read_image(
                osp.join(args.data_root, args.img_prefix, name),
                predictor.max_pixels) for name in video['file_names']
        ]
        records += evaluate_video(predictor, frames, video, video_objects,
                                  args.chunk_frames, args.prompt_frame)
    if not records:
        raise UserError(f'No annotated object of {args.ann_file} is in any '
                        'frame (every segmentation is empty): nothing to '
                        'prompt.')
    result = summary(records)
    result['seconds'] = round(time.time() - start, 1)
    print(f"click-to-track: {result['objects']} objects, {result['frames']} "
          f"object-frames: mean IoU {result['mean_iou']:.4f} (prompted "
          f"frame {result['prompted_frame_iou']:.4f}, other frames "
          f"{result['other_frames_iou'] or 0:.4f}); track match IoU "
          f"{result['match_iou']:.4f}; {result['seconds']} s")
    if args.out:
        write_bytes(
            args.out,
            json.dumps(dict(summary=result, objects=records),
                       indent=1).encode('utf-8'))
        print(f'written: {args.out}')
    return result


if __name__ == '__main__':
    main()
