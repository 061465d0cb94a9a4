"""RAP-SAM in the browser: clicks and boxes, panoptic images, video tracks.

    python demo/app.py [--weights CKPT] [--device cpu] [--port 7860]

Opens a gradio app on http://127.0.0.1:7860 with three tabs. Images and
prompts use --config (COCO classes), videos --video-config (YouTube-VIS
classes); both load the same --weights. The image features of the prompt
tab are computed once per uploaded image, so each click runs the decoder
only. Bad input (an unreadable file, an image too large, an empty video,
...) is shown as a message in the page. One request runs at a time; at most
--max-queue wait (more are told the queue is full), and uploads larger than
--max-file-size are refused.
"""
import argparse
import contextlib
import os
import os.path as osp
import queue
import re
import tempfile
import threading
import uuid

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

import gradio as gr  # noqa: E402
import gradio.component_meta as gradio_component_meta  # noqa: E402
import numpy as np  # noqa: E402
from demo_cli import load_predictor  # noqa: E402
from demo_cli import REPO, base_parser, predictor_kwargs, user_errors
from video_demo import track_video_to_files  # noqa: E402

from rap_sam.apis import RapSAMPredictor, read_image  # noqa: E402
from rap_sam.apis.visualization import draw_panoptic  # noqa
from rap_sam.apis.visualization import (draw_masks, draw_prompts, id_color,
                                        panoptic_segments, prompt_records)
from rap_sam.utils.output_files import OutputError, make_out_dir  # noqa
from rap_sam.utils.user_errors import UserError  # noqa: E402

CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_coco.py')
VIDEO_CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_yt19.py')


def _rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1])


# What one person's request may hold up: requests run one at a time (the
# model is shared), so a long queue only means long waits.
MAX_QUEUE = 8
MAX_FILE_SIZE = '100mb'


def _user_error(err: UserError) -> gr.Error:
    return gr.Error(str(err), print_exception=False)


@contextlib.contextmanager
def _no_type_stub():
    """gradio writes a type stub (demo/app.pyi) beside the module of every
    component subclass it sees defined; a demo must not write into the
    user's checkout."""
    write_stub = gradio_component_meta.create_or_modify_pyi
    gradio_component_meta.create_or_modify_pyi = lambda *args: None
    try:
        yield
    finally:
        gradio_component_meta.create_or_modify_pyi = write_stub


with _no_type_stub():

    class CheckedImage(gr.Image):
        """An image upload read by the API's :func:`read_image` instead of
        PIL: the same checks and limits as everywhere else (the size is read
        from the header before decoding), and its messages shown in the page
        (gradio's own decoder shows only "Error"). Passes an RGB ``uint8``
        array."""

        # Drawn by gradio's own Image front end (as its template components
        # are): a subclass's name would ask for a front end that none has.
        is_template = True

        def preprocess(self, payload):
            path = getattr(payload, 'path', None)
            if payload is None or not path or (payload.url
                                               or '').startswith('data:'):
                return super().preprocess(payload)
            try:
                bgr = read_image(path)
            except UserError as err:
                # Name the file the user chose, not gradio's copy of it.
                name = getattr(payload, 'orig_name',
                               None) or osp.basename(path)
                raise gr.Error(
                    str(err).replace(path, name), print_exception=False)
            return np.ascontiguousarray(bgr[..., ::-1])


class RapSAMApp:
    """The app's handlers, kept apart from the layout so tests can call
    them directly.

    Args:
        predictor (RapSAMPredictor): For the prompt and panoptic tabs.
        video_predictor (callable): Returns the predictor for videos; called
            once, on the first video.
        out_dir (str): Where video results are written.
    """

    def __init__(self, predictor, video_predictor, out_dir):
        self.predictor = predictor
        self._video_factory = video_predictor
        self._video = None
        self.out_dir = out_dir
        # One model call at a time: gradio runs handlers in threads, and the
        # prompt tab's cached features belong to one image.
        self.lock = threading.Lock()
        self._image_key = None

    # prompt tab ------------------------------------------------------
    @staticmethod
    def new_prompts(key=None) -> dict:
        return dict(points=[], boxes=[], corner=None, key=key)

    def _ensure_image(self, image: np.ndarray, key: str) -> None:
        """Features of ``image`` in the predictor (another session may have
        replaced them since)."""
        if self._image_key != key:
            self.predictor.set_image(_rgb_to_bgr(image))
            self._image_key = key

    def load_image(self, image):
        """A new image: compute its features, forget the prompts."""
        if image is None:
            return None, 'Upload an image.', self.new_prompts()
        state = self.new_prompts(uuid.uuid4().hex)
        try:
            with self.lock:
                self._ensure_image(image, state['key'])
        except UserError as err:
            raise _user_error(err)
        return image, ('Click on the image to add a point (or choose "box" '
                       'and click two corners).'), state

    def click(self, image, state: dict, mode: str, x: float, y: float):
        """Add the clicked point (or box corner) and predict every prompt."""
        if image is None:
            raise gr.Error('Upload an image first.', print_exception=False)
        state = dict(
            state, points=list(state['points']), boxes=list(state['boxes']))
        if mode == 'box':
            if state['corner'] is None:
                state['corner'] = (x, y)
                return self.render_prompts(
                    image, state, 'First corner set: '
                    'click the opposite corner.')
            (x0, y0), state['corner'] = state['corner'], None
            state['boxes'].append(
                [min(x0, x), min(y0, y),
                 max(x0, x), max(y0, y)])
        else:
            state['points'].append([x, y])
        return self.render_prompts(image, state)

    def clear(self, image, state: dict):
        state = self.new_prompts(state.get('key'))
        note = 'Prompts cleared.' if image is not None else 'Upload an image.'
        return image, note, state

    def render_prompts(self, image, state: dict, note: str = ''):
        points, boxes = state['points'], state['boxes']
        shown = _rgb_to_bgr(image)
        text = note
        if points or boxes:
            try:
                with self.lock:
                    self._ensure_image(image, state['key'])
                    result = self.predictor.predict_prompts(points, boxes)
            except UserError as err:
                raise _user_error(err)
            records = prompt_records(result, points, boxes,
                                     self.predictor.class_names)
            colors = [id_color(i) for i in range(len(records))]
            shown = draw_masks(shown,
                               result.pred_instances.masks.cpu().numpy(),
                               colors,
                               [str(i + 1) for i in range(len(colors))])
            text = '\n\n'.join(filter(None, [_prompt_table(records), note]))
        else:
            colors = []
        if state['corner'] is not None:
            colors = colors + [(255, 255, 255)]
            points = points + [list(state['corner'])]
        shown = draw_prompts(shown, points, boxes, colors)
        return _rgb_to_bgr(shown), text, state

    # panoptic tab ----------------------------------------------------
    def panoptic(self, image):
        if image is None:
            raise gr.Error('Upload an image first.', print_exception=False)
        try:
            with self.lock:
                result = self.predictor.segment_image(_rgb_to_bgr(image))
        except UserError as err:
            raise _user_error(err)
        names = self.predictor.class_names
        segments = panoptic_segments(result, names)
        shown = draw_panoptic(
            _rgb_to_bgr(image), result, names,
            self.predictor.dataset_meta['palette'])
        rows = [
            f"| {s['category']} | {s['score']:.2f} | {s['area']} |"
            for s in segments
        ]
        plural = 's' * (len(segments) != 1)
        table = '\n'.join([
            f'**{len(segments)} segment{plural}**', '',
            '| class | score | pixels |', '|---|---|---|'
        ] + rows) if segments else 'No segment found.'
        return _rgb_to_bgr(shown), table

    # video tab -------------------------------------------------------
    def video_predictor(self) -> RapSAMPredictor:
        if self._video is None:
            self._video = self._video_factory()
        return self._video

    def iter_track(self, video, score_thr: float, progress=None):
        """Track instances in ``video``, yielding the page's video outputs
        as the frames are done: ``(None, None, status, latest drawn frame
        (RGB))`` while it runs, then ``(webm, [mp4, json], summary, last
        frame)``."""
        if not video:
            raise gr.Error('Upload a video first.', print_exception=False)
        folder = osp.join(self.out_dir, uuid.uuid4().hex[:8])
        stem = osp.join(folder, osp.splitext(osp.basename(video))[0])
        drawn, outcome, counts = queue.Queue(), {}, {}

        def report(done, total):
            counts.update(done=done, total=total)
            if progress is not None and total:
                progress((done, total), unit='frames')

        def work():
            # The model runs here; the page is fed from the queue.
            try:
                make_out_dir(folder)
                with self.lock:
                    outcome['info'] = track_video_to_files(
                        self.video_predictor(),
                        video,
                        stem,
                        score_thr,
                        writers=(('webm', 'VP80'), ('mp4', 'mp4v')),
                        progress=report,
                        on_frame=drawn.put)
            except BaseException as err:  # handed to the request below
                outcome['error'] = err
            finally:
                drawn.put(None)

        threading.Thread(target=work, daemon=True).start()
        latest, finished = None, False
        while not finished:
            frame = drawn.get()
            finished = frame is None
            # Show the newest frame: skip those drawn while the page was
            # being updated (None, the end, comes last).
            while not finished and not drawn.empty():
                newer = drawn.get()
                finished = newer is None
                frame = frame if finished else newer
            if frame is not None:
                latest = np.ascontiguousarray(frame[..., ::-1])
                yield (None, None, f"{counts.get('done', 0)} frames done",
                       latest)
        error = outcome.get('error')
        if isinstance(error, UserError):
            raise _user_error(error)
        if error is not None:
            raise error
        info = outcome['info']
        text = (f"**{info['num_frames']} frames, {len(info['tracks'])} "
                f'tracks** scoring at least {score_thr:g}.')
        yield (f'{stem}.webm', [f'{stem}.mp4', f'{stem}.json'], text, latest)

    def track(self, video, score_thr: float, progress=None):
        """:meth:`iter_track`'s result: ``(webm, [mp4, json], summary)``."""
        *_, last = self.iter_track(video, score_thr, progress)
        return last[:3]


def _prompt_table(records) -> str:
    rows = [
        f"| {i + 1} | {r['type']} | {r['category']} | {r['score']:.2f} "
        f"| {r['iou_score']:.2f} | {r['area']} |"
        for i, r in enumerate(records)
    ]
    return '\n'.join([
        f'**{len(records)} prompt{"s" * (len(records) != 1)}**', '',
        '| # | prompt | class | score | predicted IoU | mask pixels |',
        '|---|---|---|---|---|---|'
    ] + rows)


def build_ui(app: RapSAMApp) -> gr.Blocks:
    with gr.Blocks(title='RAP-SAM') as ui:
        gr.Markdown('# RAP-SAM: real-time all-purpose segmentation')
        with gr.Tab('Clicks and boxes', id='prompts'):
            state = gr.State(app.new_prompts())
            with gr.Row():
                with gr.Column():
                    image = CheckedImage(
                        label='Image',
                        type='numpy',
                        sources=['upload'],
                        elem_id='prompt-input')
                    mode = gr.Radio(['point', 'box'],
                                    value='point',
                                    label='A click adds a',
                                    elem_id='mode')
                    clear = gr.Button('Clear prompts', elem_id='clear')
                with gr.Column():
                    canvas = gr.Image(
                        label='Click here',
                        interactive=False,
                        format='png',
                        elem_id='prompt-canvas')
                    status = gr.Markdown(
                        'Upload an image.', elem_id='prompt-status')

            def on_select(img, st, md, evt: gr.SelectData):
                return app.click(img, st, md, *evt.index[:2])

            image.change(app.load_image, image, [canvas, status, state])
            canvas.select(on_select, [image, state, mode],
                          [canvas, status, state])
            clear.click(app.clear, [image, state], [canvas, status, state])
        with gr.Tab('Panoptic image', id='panoptic'):
            with gr.Row():
                pan_in = CheckedImage(
                    label='Image',
                    type='numpy',
                    sources=['upload'],
                    elem_id='panoptic-input')
                pan_out = gr.Image(
                    label='Segments',
                    interactive=False,
                    format='png',
                    elem_id='panoptic-output')
            pan_btn = gr.Button(
                'Segment', variant='primary', elem_id='panoptic-run')
            pan_table = gr.Markdown(elem_id='panoptic-status')
            pan_btn.click(app.panoptic, pan_in, [pan_out, pan_table])
        with gr.Tab('Video instances', id='video'):
            with gr.Row():
                vid_in = gr.Video(
                    label='Video', sources=['upload'], elem_id='video-input')
                vid_live = gr.Image(
                    label='Tracks as they come',
                    interactive=False,
                    elem_id='video-live')
                vid_out = gr.Video(
                    label='Tracks', interactive=False, elem_id='video-output')
            thr = gr.Slider(
                0,
                1,
                value=0.5,
                step=0.05,
                label='Show instances scoring at least',
                elem_id='video-thr')
            vid_btn = gr.Button(
                'Track', variant='primary', elem_id='video-run')
            vid_status = gr.Markdown(elem_id='video-status')
            vid_files = gr.File(
                label='Annotated mp4 and tracks json', elem_id='video-files')

            def on_track(video, score_thr, progress=gr.Progress()):
                yield from app.iter_track(video, score_thr, progress)

            vid_btn.click(on_track, [vid_in, thr],
                          [vid_out, vid_files, vid_status, vid_live])
    return ui


def file_size(text: str):
    """An argparse ``type``: a size as gradio takes it (``20mb``, ``500kb``,
    ``1gb``; a bare number is bytes)."""
    size = text.strip().lower().replace(' ', '')
    if size.isdigit() and int(size) > 0:
        return int(size)
    if not re.fullmatch(r'[1-9]\d*(b|kb|mb|gb|tb)', size):
        raise argparse.ArgumentTypeError(
            f'a size such as 20mb, 500kb or 1gb, got {text!r}')
    return size


def launch(app: RapSAMApp,
           host='127.0.0.1',
           port=7860,
           max_queue: int = MAX_QUEUE,
           max_file_size: str = MAX_FILE_SIZE,
           **kwargs):
    """Serve the app without blocking; returns the gradio Blocks (stop it
    with ``.close()``).

    Args:
        max_queue (int): Requests that may wait while one runs; more are
            refused with gradio's "queue is full" message.
        max_file_size (str | int): Larger uploads are refused (bytes, or
            e.g. ``'100mb'``).
    """
    ui = build_ui(app)
    ui.queue(default_concurrency_limit=1, max_size=max_queue)
    ui.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        allowed_paths=[app.out_dir],
        max_file_size=max_file_size,
        # An unexpected failure shows its message, not a bare "Error".
        show_error=True,
        quiet=True,
        **kwargs)
    return ui


def main(argv=None):
    parser = base_parser(__doc__)
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--video-config', default=VIDEO_CONFIG)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument(
        '--max-queue',
        type=int,
        default=MAX_QUEUE,
        help='requests that may wait while one runs (default %(default)s)')
    parser.add_argument(
        '--max-file-size',
        default=MAX_FILE_SIZE,
        type=file_size,
        help='largest upload, e.g. 20mb (default %(default)s)')
    args = parser.parse_args(argv)
    if args.max_queue < 1:
        parser.error('--max-queue must be at least 1')
    with user_errors():
        app = RapSAMApp(
            load_predictor(args, args.config, **predictor_kwargs(args)),
            lambda: load_predictor(args, args.video_config,
                                   **predictor_kwargs(args)),
            tempfile.mkdtemp(prefix='rap_sam_app_'))
        try:
            ui = launch(app, args.host, args.port, args.max_queue,
                        args.max_file_size)
        except OSError as err:  # gradio's "Cannot find empty port" and kin
            reason = str(err).split('. ')[0].rstrip('.')
            raise OutputError(f'Cannot serve on {args.host}:{args.port} '
                              f'({reason}): choose another --port or '
                              '--host.') from err
    print(f'RAP-SAM app on http://{args.host}:{args.port} (Ctrl+C stops it)')
    try:
        ui.block_thread()
    finally:
        ui.close()


if __name__ == '__main__':
    main()
