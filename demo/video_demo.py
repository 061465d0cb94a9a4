"""Video instance segmentation with tracks.

    python demo/video_demo.py VIDEO_OR_FRAME_DIR CONFIG [--weights CKPT] \
        [--out-dir DIR] [--score-thr T] [--chunk-frames N] [--fps F]
    python demo/video_demo.py --camera 0 CONFIG [...] [--show]
    python demo/video_demo.py --stream rtsp://HOST/PATH CONFIG [...] [--show]
    python demo/video_demo.py VIDEO_OR_FRAME_DIR CONFIG --frame K \
        --points X,Y [X,Y ...] --boxes X1,Y1,X2,Y2 [...] [...]

CONFIG is normally configs/rap_sam/eval_rap_sam_yt19.py. Writes DIR/NAME.mp4
(each track in its own colour, labelled with its id and class) and
DIR/NAME.json (per track: id, class, and per frame its score, box and COCO
RLE mask). Frames are read and segmented a chunk at a time, so long videos
run in bounded memory. Results of an earlier run are not replaced without
--overwrite, the input is never written over, and each file appears only
once complete. When a frame fails part-way (a frame of another size, an
unreadable image in a folder, a video file cut short or damaged there),
the frames before it are still written, the json saying "complete": false
and why ("error"), and the run ends with the message (exit status 2).

Click-to-track (``--points`` / ``--boxes``, on frame ``--frame K``, 0 by
default, in that frame's pixels): each prompt is one object, followed
through the whole video, before frame K and after it
(``RapSAMPredictor.iter_track_prompt``); only these objects are drawn and
listed (ids 1, 2, ... in prompt order: points first, then boxes), and the
json also holds the prompts and, per object, ``match_iou``: how well a
track of the model matched the prompt's mask on frame K (low: no track
follows that object). ``--score-thr`` does not apply: every prompted
object is drawn.

A camera (``--camera N``) or a network stream (``--stream URL``, anything
OpenCV's FFmpeg reads) is segmented live, a few frames at a time
(``--chunk-frames``, 5 by default here: the latency), until it ends or
Ctrl+C; each frame's latency from capture to result is printed, the mp4
grows as it goes (DIR/camera0.mp4, DIR/stream.mp4) and is complete, with
its json, when the run stops. ``--show`` also draws the results in a window
(it needs a display).
"""
import argparse
import math
import os
import os.path as osp
import sys
import time
from typing import Callable, Iterator, Optional

from demo_cli import (base_parser, guard_interrupts, numbers, positive_int,
                      score_threshold)

# The mp4v writer's timebase: OpenCV's writer loops without end on an
# infinite rate, and FFmpeg refuses rates past this one.
MAX_FPS = 1000


def frame_rate(text: str) -> float:
    """An argparse ``type``: a frame rate in (0, :data:`MAX_FPS`]."""
    try:
        fps = float(text)
    except ValueError:
        fps = math.nan
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise argparse.ArgumentTypeError(
            f'a frame rate above 0 and at most {MAX_FPS}, got {text!r}')
    return fps


def parse_args(argv=None):
    parser = base_parser(
        __doc__,
        'a video file or a folder of frames (or --camera / --stream)',
        inputs_optional=True,
        # Videos run on torch; no --post: the clip linker reads every
        # query's exact masks, and iter_video takes no single image.
        backends=False)
    live = parser.add_mutually_exclusive_group()
    live.add_argument(
        '--camera',
        type=int,
        metavar='N',
        help='segment camera N (0 is the first) live, until Ctrl+C')
    live.add_argument(
        '--stream',
        metavar='URL',
        help='segment a network stream (rtsp://, http:// ...) live')
    parser.add_argument(
        '--show',
        action='store_true',
        help='also show the results in a window (needs a display)')
    parser.add_argument('--out-dir', default='outputs/video_demo')
    parser.add_argument(
        '--score-thr',
        type=score_threshold,
        default=0.5,
        help='draw and list instances scoring at least this')
    parser.add_argument(
        '--chunk-frames',
        type=positive_int,
        default=None,
        help='frames segmented together: the memory held, and for a camera '
        'or stream the latency (default 30, live 5)')
    parser.add_argument(
        '--fps',
        type=frame_rate,
        default=None,
        help="output frame rate (default: the video's, or "
        '10 for a folder of frames)')
    parser.add_argument(
        '--frame',
        type=int,
        default=None,
        metavar='K',
        help='click-to-track: the frame the prompts are on (default 0)')
    parser.add_argument(
        '--points',
        nargs='+',
        default=[],
        type=numbers(2, 'A point'),
        metavar='X,Y',
        help='click-to-track: objects clicked on frame K')
    parser.add_argument(
        '--boxes',
        nargs='+',
        default=[],
        type=numbers(4, 'A box'),
        metavar='X1,Y1,X2,Y2',
        help='click-to-track: objects boxed on frame K')
    # Intermixed: `VIDEO --camera 0 CONFIG` must not take VIDEO as CONFIG.
    args = parser.parse_intermixed_args(argv)
    live_source = args.camera if args.camera is not None else args.stream
    if (args.inputs is None) == (live_source is None):
        parser.error('give a video file or frame folder, or --camera N, or '
                     '--stream URL (one of them)')
    args.prompted = bool(args.points or args.boxes)
    if args.prompted and live_source is not None:
        parser.error('--points / --boxes track objects through a recorded '
                     'video (a file or frame folder), not a camera or stream')
    if args.frame is not None and not args.prompted:
        parser.error('--frame K needs the objects to track on it: --points '
                     'X,Y ... and/or --boxes X1,Y1,X2,Y2 ...')
    if args.frame is None:
        args.frame = 0
    elif args.frame < 0:
        parser.error(f'--frame must be 0 or more (0 is the first frame), '
                     f'got {args.frame}')
    if args.chunk_frames is None:
        args.chunk_frames = 5 if live_source is not None else 30
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

import cv2
from demo_cli import load_predictor, predictor_kwargs, user_errors
from tqdm import tqdm

from rap_sam.apis import (InputError, RapSAMPredictor, check_prompts,
                          iter_frames)
from rap_sam.apis.inputs import open_video_quietly, without_password
from rap_sam.apis.prompt_tracking import FramePastEndError
from rap_sam.apis.visualization import draw_tracks, mask_box, mask_rle
from rap_sam.utils.interrupt_guard import Terminated
from rap_sam.utils.output_files import (OutputError, check_outputs, commit,
                                        discard, open_video_writer,
                                        result_stems, run_out_dir, temp_path,
                                        write_json)
from rap_sam.utils.user_errors import UserError


def timed_frames(frames, arrivals: list) -> Iterator:
    """``frames``, noting when each was read: the latency clock starts
    when a live frame arrives, not when the model gets it."""
    for frame in frames:
        arrivals.append(time.perf_counter())
        yield frame


def show_window(title: str) -> Callable:
    """A function that shows a drawn frame in an OpenCV window; checked
    before the model loads."""
    if os.name != 'nt' and not (os.environ.get('DISPLAY')
                                or os.environ.get('WAYLAND_DISPLAY')):
        raise InputError('--show needs a display (DISPLAY is not set); the '
                         'results are written to the mp4 either way.')

    def show(frame):
        cv2.imshow(title, frame)
        cv2.waitKey(1)

    return show


def source_info(video) -> tuple:
    """``(fps, frame count)`` of a video file, when OpenCV knows them."""
    if isinstance(video, str) and osp.isfile(video):
        cap = open_video_quietly(video)
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(
            cv2.CAP_PROP_FRAME_COUNT)
        cap.release()
        # OpenCV says -1 (or 0) when the container does not tell; a rate
        # the writer cannot take (past MAX_FPS) is none to keep.
        return (fps if 0 < fps <= MAX_FPS else None), (
            int(count) if count > 0 else None)
    if isinstance(video, (str, os.PathLike)):  # a folder, or no file
        return None, None
    return None, (len(video) if hasattr(video, '__len__') else None)


def _open_writers(opened: list, stem: str, writers, fps: float, size) -> None:
    """Append ``(final path, temp path, cv2.VideoWriter)`` to ``opened`` for
    each writer."""
    for ext, fourcc in writers:
        path = f'{stem}.{ext}'
        tmp = temp_path(path)
        out = open_video_writer(tmp, fourcc, fps, size)
        opened.append((path, tmp, out))
        if not out.isOpened():
            raise OutputError(f'Cannot write {path} ({fourcc}) with '
                              'OpenCV.')


def _finish_videos(opened, keep: bool) -> None:
    """Release the writers; rename complete files into place (``keep``) or
    remove them."""
    for _, _, out in opened:
        out.release()
    done = 0
    try:
        for path, tmp, _ in opened:
            if keep:
                commit(tmp, path)
            else:
                discard(tmp)
            done += 1
    finally:
        # A commit that failed (a full disk, a name another run took)
        # leaves no temporary file of the writers after it.
        for _, tmp, _ in opened[done:]:
            discard(tmp)


def error_text(error: BaseException, count: int) -> str:
    """Why a video stopped after ``count`` frames, in words: the error's
    message, or for a Ctrl+C, a SIGTERM or an error without a message,
    what happened."""
    frames = f'{count} frame{"s" * (count != 1)}'
    if isinstance(error, Terminated):  # a KeyboardInterrupt too
        return f'terminated (SIGTERM) after {frames}'
    if isinstance(error, KeyboardInterrupt):
        return f'interrupted (Ctrl+C) after {frames}'
    return str(error) or (f'stopped after {frames} by '
                          f'{type(error).__name__} (no message)')


def track_video_to_files(predictor: RapSAMPredictor,
                         video,
                         stem: str,
                         score_thr: float = 0.5,
                         chunk_frames: int = 30,
                         fps: Optional[float] = None,
                         writers=(('mp4', 'mp4v'), ),
                         progress: Optional[Callable] = None,
                         on_frame: Optional[Callable] = None,
                         results: Optional[Iterator] = None,
                         extra: Optional[dict] = None,
                         source: Optional[str] = None) -> dict:
    """Segment ``video`` and write ``stem.{ext}`` annotated videos (one per
    ``(ext, fourcc)`` in ``writers``) and ``stem.json``; returns the json's
    content. ``progress(done, total)`` is called after each frame, and
    ``on_frame(drawn_frame)`` with each drawing. ``results``: the
    ``(frame, result)`` pairs to write instead of ``iter_video``'s (the
    tracks of prompted objects), ``extra``: what the json says besides, and
    ``source``: what its ``"video"`` names (default: ``video`` when it is a
    path; a camera or stream is named by the caller).

    Each file appears only once complete. When the video fails part-way (a
    bad frame, Ctrl+C), the frames done so far are still written, the json
    saying ``"complete": false`` and why (``"error"``), and a
    :class:`UserError` is raised that says so; when it fails before the
    first frame, nothing is written. Earlier results at ``stem`` (which
    the caller allowed to be replaced) are then kept, and the frames done
    go to ``stem.partial.*`` beside them.
    """
    source_fps, total = source_info(video)
    if fps is None:
        fps = source_fps or 10.0
    elif not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        # Checked here too for callers other than the command line: the
        # writer would hang (inf) or fail only after the whole video.
        raise InputError(f'The frame rate must be above 0 and at most '
                         f'{MAX_FPS}, got {fps}.')
    names = predictor.class_names
    tracks, opened, count, size = {}, [], 0, None
    try:
        if results is None:
            results = predictor.iter_video(video, chunk_frames, score_thr)
        for frame, result in results:
            if size is None:
                size = (frame.shape[1], frame.shape[0])
                _open_writers(opened, stem, writers, fps, size)
            instances = result.pred_track_instances
            shown = draw_tracks(frame, instances, names)
            for _, _, out in opened:
                out.write(shown)
            if on_frame:
                on_frame(shown)
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
        error = None
    except (Exception, KeyboardInterrupt) as err:
        error = err
    keep = count > 0 and not isinstance(error, OutputError)
    earlier = ''
    if keep and error is not None and any(
            osp.lexists(f'{stem}.{ext}')
            for ext in [ext for ext, _ in writers] + ['json']):
        # --overwrite consents to replacing earlier results with finished
        # ones: a run cut short leaves them and puts its part beside them.
        earlier = f' (the earlier {osp.basename(stem)}.* are kept)'
        stem = f'{stem}.partial'
        opened = [(f'{stem}{osp.splitext(path)[1]}', tmp, out)
                  for path, tmp, out in opened]
    _finish_videos(opened, keep)
    if not keep:
        if error is not None:
            raise error
        raise InputError(f'{video} has no frames.')  # iter_video says first
    info = dict(
        video=source or (video if isinstance(video, str) else None),
        fps=fps,
        width=size[0],
        height=size[1],
        num_frames=count,
        complete=error is None,
        tracks=sorted(tracks.values(), key=lambda t: t['id']),
        **(extra or {}))
    if error is not None:
        info['error'] = error_text(error, count)
    write_json(f'{stem}.json', info)
    if error is None:
        return info
    kept = (f'the {count} frame{"s" * (count != 1)} segmented before it '
            f'are in {stem}.{writers[0][0]} and {stem}.json{earlier}')
    if isinstance(error, UserError):
        raise InputError(f'{error} Stopped: {kept}.') from error
    if isinstance(error, KeyboardInterrupt):  # Ctrl+C or SIGTERM: one line
        raise type(error)(kept) from error
    print(f'Stopped: {kept}.', file=sys.stderr)
    raise error


def _live_main(args, source) -> None:
    """--camera / --stream: results as they come, latency per frame."""
    show = show_window('RAP-SAM') if args.show else None
    # Opened once here: a missing camera is reported before the model loads.
    frames = iter_frames(source)
    first = next(frames)
    name = f'camera{source}' if args.camera is not None else 'stream'
    described = (f'camera {source}'
                 if args.camera is not None else without_password(source))
    stem = osp.join(args.out_dir, name)
    check_outputs([f'{stem}.mp4', f'{stem}.json'], [], args.overwrite)
    predictor = load_predictor(args, **predictor_kwargs(args))
    with run_out_dir(args.out_dir):
        arrivals = []

        def all_frames():
            yield first
            yield from frames

        def progress(done, total):
            latency = (time.perf_counter() - arrivals[done - 1]) * 1000
            print(
                f'frame {done - 1}: {latency:.0f} ms from capture to result',
                file=sys.stderr)

        try:
            info = track_video_to_files(
                predictor,
                timed_frames(all_frames(), arrivals),
                stem,
                args.score_thr,
                args.chunk_frames,
                10.0 if args.fps is None else args.fps,
                progress=progress,
                on_frame=show,
                source=described)
        except KeyboardInterrupt as stop:
            # Ctrl+C is how a live run stops: not an error, but where its
            # frames went is said (the note track_video_to_files raised).
            if stop.args and isinstance(stop.args[0], str):
                print(f'{described}: stopped; {stop.args[0]}.')
            return
        print(f'{described}: the stream ended after '
              f"{info['num_frames']} frames, {len(info['tracks'])} tracks "
              f'-> {stem}.mp4/.json')


def prompt_tracks(predictor: RapSAMPredictor,
                  video,
                  frame: int,
                  points=(),
                  boxes=(),
                  chunk_frames: int = 30) -> tuple:
    """The prompted objects' ``(frame, result)`` pairs
    (``iter_track_prompt``'s), and what the json says of the prompts: each
    prompt and, per object, ``match_iou``."""
    points, boxes = [list(p) for p in points], [list(b) for b in boxes]
    prompts = [dict(type='point', xy=p) for p in points] + \
        [dict(type='box', xyxy=b) for b in boxes]
    pairs = predictor.iter_track_prompt(video, frame, points, boxes,
                                        chunk_frames)

    for i, prompt in enumerate(prompts):
        prompt['id'] = i + 1  # the object's track id

    def results():
        for frame, result in pairs:
            # The same in every frame; known once the prompted frame is
            # decoded, and in the json (written after the frames) by then.
            match = result.pred_track_instances.match_ious.tolist()
            for prompt, iou in zip(prompts, match):
                prompt['match_iou'] = round(iou, 4)
            yield frame, result

    return results(), dict(prompt_frame=frame, prompts=prompts)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        if args.inputs is None:
            return _live_main(
                args, args.camera if args.camera is not None else args.stream)
        if args.show:
            show = show_window(osp.basename(args.inputs))
        else:
            show = None
        if not osp.exists(args.inputs):
            raise InputError(f'No such video or folder: {args.inputs}')
        # Unreadable, or a prompt off the frame? Said before loading.
        first = next(iter_frames(args.inputs))
        if args.prompted:
            check_prompts(args.points, args.boxes, first.shape[1],
                          first.shape[0])
        stem = result_stems([args.inputs], args.out_dir)[0]
        check_outputs([f'{stem}.mp4', f'{stem}.json'], [args.inputs],
                      args.overwrite)
        predictor = load_predictor(args, **predictor_kwargs(args))
        with run_out_dir(args.out_dir):
            bar = None

            def progress(done, total):
                # Opened with the first frame: an error found while reading the
                # video (a prompt past its end) stays the only line on stderr.
                nonlocal bar
                if bar is None:
                    bar = tqdm(desc='frames', unit='frame')
                bar.total = total
                bar.update(1)

            results, extra = None, None
            try:
                if args.prompted:
                    results, extra = prompt_tracks(predictor, args.inputs,
                                                   args.frame, args.points,
                                                   args.boxes,
                                                   args.chunk_frames)
                info = track_video_to_files(
                    predictor,
                    args.inputs,
                    stem,
                    args.score_thr,
                    args.chunk_frames,
                    args.fps,
                    progress=progress,
                    on_frame=show,
                    results=results,
                    extra=extra)
            except FramePastEndError as err:
                # Found while the video is read (a file's length is known once
                # read): said with the option the user typed.
                raise err.named('--frame') from None
            finally:
                if bar is not None:
                    bar.close()
        # Inside: a stdout closed early (| head -1) is one line too.
        print(f"{info['num_frames']} frames, {len(info['tracks'])} tracks "
              f'-> {stem}.mp4/.json')


if __name__ == '__main__':
    main()
