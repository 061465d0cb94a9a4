"""Video instance segmentation with tracks.

    python demo/video_demo.py VIDEO_OR_FRAME_DIR CONFIG [--weights CKPT] \
        [--out-dir DIR] [--score-thr T] [--chunk-frames N] [--fps F]

CONFIG is normally configs/rap_sam/eval_rap_sam_yt19.py. Writes DIR/NAME.mp4
(each track in its own colour, labelled with its id and class) and
DIR/NAME.json (per track: id, class, and per frame its score, box and COCO
RLE mask). Frames are read and segmented a chunk at a time, so long videos
run in bounded memory.
"""
import json
import os
import os.path as osp
from typing import Callable, Optional

import cv2
from demo_cli import base_parser, predictor_kwargs, user_errors
from tqdm import tqdm

from rap_sam.apis import InputError, RapSAMPredictor, iter_frames
from rap_sam.apis.visualization import draw_tracks, mask_box, mask_rle


def parse_args(argv=None):
    parser = base_parser(__doc__, 'a video file or a folder of frames')
    parser.add_argument('--out-dir', default='outputs/video_demo')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.5,
        help='draw and list instances scoring at least this')
    parser.add_argument(
        '--chunk-frames',
        type=int,
        default=30,
        help='frames held in memory at once')
    parser.add_argument(
        '--fps',
        type=float,
        default=None,
        help="output frame rate (default: the video's, or "
        '10 for a folder of frames)')
    return parser.parse_args(argv)


def source_info(video) -> tuple:
    """``(fps, frame count)`` of a video file, when OpenCV knows them."""
    if isinstance(video, str) and osp.isfile(video):
        cap = cv2.VideoCapture(video)
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(
            cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        return (fps if 0 < fps < 1000 else None), (int(count) or None)
    if isinstance(video, str) and osp.isdir(video):
        return None, None
    return None, (len(video) if hasattr(video, '__len__') else None)


def track_video_to_files(predictor: RapSAMPredictor,
                         video,
                         stem: str,
                         score_thr: float = 0.5,
                         chunk_frames: int = 30,
                         fps: Optional[float] = None,
                         writers=(('mp4', 'mp4v'), ),
                         progress: Optional[Callable] = None) -> dict:
    """Segment ``video`` and write ``stem.{ext}`` annotated videos (one per
    ``(ext, fourcc)`` in ``writers``) and ``stem.json``; returns the json's
    content. ``progress(done, total)`` is called after each frame."""
    source_fps, total = source_info(video)
    fps = fps or source_fps or 10.0
    names = predictor.class_names
    tracks, outs, count = {}, [], 0
    try:
        for frame, result in predictor.iter_video(video, chunk_frames,
                                                  score_thr):
            if not outs:
                size = (frame.shape[1], frame.shape[0])
                for ext, fourcc in writers:
                    out = cv2.VideoWriter(f'{stem}.{ext}',
                                          cv2.VideoWriter_fourcc(*fourcc), fps,
                                          size)
                    if not out.isOpened():
                        raise InputError(f'Cannot write {stem}.{ext} '
                                         f'({fourcc}) with OpenCV.')
                    outs.append(out)
            instances = result.pred_track_instances
            shown = draw_tracks(frame, instances, names)
            for out in outs:
                out.write(shown)
            masks = instances.masks.cpu().numpy()
            for i, mask, label, score in zip(instances.instances_id.tolist(),
                                             masks, instances.labels.tolist(),
                                             instances.scores.tolist()):
                track = tracks.setdefault(
                    i,
                    dict(id=i, category=names[label], label=label, frames=[]))
                track['frames'].append(
                    dict(
                        frame=count,
                        score=round(score, 4),
                        bbox=mask_box(mask),
                        segmentation=mask_rle(mask)))
            count += 1
            if progress:
                progress(count, total)
    finally:
        for out in outs:
            out.release()
    info = dict(
        video=video if isinstance(video, str) else None,
        fps=fps,
        width=size[0],
        height=size[1],
        num_frames=count,
        tracks=sorted(tracks.values(), key=lambda t: t['id']))
    with open(f'{stem}.json', 'w') as f:
        json.dump(info, f)
    return info


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        if not osp.exists(args.inputs):
            raise InputError(f'No such video or folder: {args.inputs}')
        next(iter_frames(args.inputs))  # unreadable? say so before loading
        predictor = RapSAMPredictor(args.config, args.weights, args.device,
                                    args.scale, **predictor_kwargs(args))
        os.makedirs(args.out_dir, exist_ok=True)
        name = osp.splitext(osp.basename(osp.normpath(args.inputs)))[0]
        stem = osp.join(args.out_dir, name)
        bar = tqdm(desc='frames', unit='frame')

        def progress(done, total):
            bar.total = total
            bar.update(1)

        info = track_video_to_files(
            predictor,
            args.inputs,
            stem,
            args.score_thr,
            args.chunk_frames,
            args.fps,
            progress=progress)
        bar.close()
    print(f"{info['num_frames']} frames, {len(info['tracks'])} tracks -> "
          f'{stem}.mp4/.json')


if __name__ == '__main__':
    main()
