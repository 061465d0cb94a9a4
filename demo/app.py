"""RAP-SAM in the browser: clicks and boxes, panoptic images, video tracks.

    python demo/app.py [--weights CKPT] [--device cpu] [--port 7860]
    python demo/app.py --export DIR [--backend openvino] [--threads N]
        [--post exact|half] ...             # an export folder: no video tab

Opens a gradio app on http://127.0.0.1:7860 with three tabs. Images and
prompts use --config (COCO classes), videos --video-config (YouTube-VIS
classes); both load the same --weights. The image features of the prompt
tab are computed once per uploaded image, so each click runs the decoder
only. The video tab tracks every instance, or only the objects clicked on
one frame (before that frame and after it: ``iter_track_prompt``); either
way the annotated frames are shown as they are done, then the video, an
mp4 and a json as demo/video_demo.py writes them. Bad input (an unreadable
file, an image too large, an empty video, a frame past the end ...) is
shown as a message in the page; an API client (gradio_client, by
api_name) gets the message as its error, whatever it sends. One request
runs at a time; at most --max-queue wait (more are told the queue is
full), uploads larger than --max-file-size and videos longer than
--max-frames are refused.
--export serves the image tabs from a folder written by
tools/deploy/export.py on ONNX Runtime or OpenVINO; videos are tracked on
PyTorch only, so that app has no video tab.
"""
import argparse
import base64
import collections
import contextlib
import hashlib
import json
import math
import os
import os.path as osp
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import uuid

from demo_cli import REPO, base_parser, check_export_args, guard_interrupts

CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_coco.py')
VIDEO_CONFIG = osp.join(REPO, 'configs/rap_sam/eval_rap_sam_yt19.py')

# What one person's request may hold up: requests run one at a time (the
# model is shared), so a long queue only means long waits.
MAX_QUEUE = 8
# The longest video tracked, in frames (100 s at 30 fps): one video holds
# the model for everyone while it runs, and its tracks sit in memory until
# the json is written. demo/video_demo.py takes any length.
MAX_FRAMES = 3000
MAX_FILE_SIZE = '100mb'
# gradio's copies of uploads and results (its cache, /tmp/gradio) older
# than this are deleted, checked hourly, and all of them when the app
# stops: a server left running must not fill the disk. The videos made are
# kept in the app's own folder, printed at start.
CACHE_SECONDS = 24 * 3600


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


def parse_args(argv=None):
    parser = base_parser(
        __doc__,
        post='It applies to the panoptic tab; clicks, boxes and the video '
        "tab stay exact (a video model's clip linker reads every query's "
        'exact masks)',
        export=True)
    parser.add_argument(
        '--config',
        default=None,
        help='the image tabs\' config (default: '
        f'{osp.relpath(CONFIG, REPO)}; not with --export)')
    parser.add_argument(
        '--video-config',
        default=None,
        help='the video tab\'s config (default: '
        f'{osp.relpath(VIDEO_CONFIG, REPO)}; not with --export, whose app '
        'has no video tab)')
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
    parser.add_argument(
        '--max-frames',
        type=int,
        default=MAX_FRAMES,
        help='longest video the video tab takes, in frames (default '
        '%(default)s); demo/video_demo.py takes any length')
    args = parser.parse_args(argv)
    if args.export is None:
        args.config = args.config or CONFIG
        args.video_config = args.video_config or VIDEO_CONFIG
    check_export_args(parser, args, '--config')
    if args.export is not None and args.video_config is not None:
        parser.error('--export serves the image tabs only (videos are '
                     'tracked on PyTorch): leave out --video-config')
    if args.max_queue < 1:
        parser.error('--max-queue must be at least 1')
    if args.max_frames < 1:
        parser.error('--max-frames must be at least 1')
    if not 1 <= args.port <= 65535:
        parser.error(f'--port must be 1 to 65535, got {args.port}')
    return args


if __name__ == '__main__':
    # Before the imports below (gradio, torch, mmdet: seconds): --help and a
    # usage error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

import gradio as gr  # noqa: E402
import gradio.component_meta as gradio_component_meta  # noqa: E402
import numpy as np  # noqa: E402
import pydantic  # noqa: E402
from demo_cli import load_predictor, predictor_kwargs, user_errors
from gradio import processing_utils  # noqa: E402
from gradio.exceptions import InvalidPathError  # noqa: E402
from gradio.route_utils import delete_files_created_by_app  # noqa
from gradio_client import utils as client_utils  # noqa: E402
from video_demo import source_info  # noqa: E402
from video_demo import prompt_tracks, track_video_to_files

from rap_sam.apis import RapSAMPredictor  # noqa: E402
from rap_sam.apis import InputError, check_prompts, iter_frames, read_image
from rap_sam.apis.prompt_tracking import FramePastEndError  # noqa: E402
from rap_sam.apis.visualization import draw_panoptic  # noqa
from rap_sam.apis.visualization import (draw_masks, draw_prompts, id_color,
                                        panoptic_segments, prompt_records)
from rap_sam.utils.config_file import read_config  # noqa: E402
from rap_sam.utils.output_files import OutputError, make_out_dir  # noqa
from rap_sam.utils.user_errors import UserError  # noqa: E402


def _rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[..., ::-1])


def _page_text(err: UserError, path=None) -> str:
    """``err``'s message for the page: an upload named as the user named
    it, not by gradio's copy of it (``/tmp/gradio/<hash>/clip.mp4``)."""
    text = str(err)
    if isinstance(path, str) and path:
        text = _gone_text(path) or text.replace(path, osp.basename(path))
    return text


def _gone_text(path: str, name=None):
    """The message for an upload whose copy gradio has deleted (None while
    it is there): a page open since before a restart, or a session older
    than the cache, still names it, and "not found" would not say why."""
    if osp.exists(path):
        return None
    return (f'{name or osp.basename(path)} is no longer on the server '
            '(uploads are deleted when the app stops and after '
            f'{CACHE_SECONDS // 3600} hours): upload it again.')


def _refusal(text: str) -> gr.Error:
    """A request's input refused: said to the client, and not logged as a
    traceback (gradio logs one for any other exception, and for a gr.Error
    unless told not to)."""
    return gr.Error(text, print_exception=False)


def _user_error(err: UserError, path=None) -> gr.Error:
    return _refusal(_page_text(err, path))


def _shown(value, width: int = 60) -> str:
    """``value``'s repr, cut short: a message stays one line whatever a
    client sent (a base64 string, a long list)."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


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
            if payload is None:
                return None
            path = getattr(payload, 'path', None)
            url = getattr(payload, 'url', None) or ''
            try:
                if url.startswith('data:'):
                    # An image sent inline by an API client (the page
                    # uploads a file): the same checks, on its bytes.
                    bgr = read_image(_data_url_bytes(url))
                elif path:
                    bgr = read_image(path)
                else:
                    raise InputError('No image given.')
            except UserError as err:
                text = str(err)
                if path:
                    # The file as the user named it, not gradio's copy.
                    name = getattr(payload, 'orig_name',
                                   None) or osp.basename(path)
                    text = _gone_text(path, name) or text.replace(path, name)
                raise _refusal(text)
            return np.ascontiguousarray(bgr[..., ::-1])

    # The page sends only values these take; an API client may send any
    # JSON, which gradio's own checks refuse with a traceback in the log
    # (and a TypeError's many lines to the client).

    class CheckedSlider(gr.Slider):
        """A slider whose value is checked with its label in the message."""

        is_template = True

        def preprocess(self, payload):
            if (isinstance(payload, bool)
                    or not isinstance(payload, (int, float))
                    or not self.minimum <= payload <= self.maximum):
                raise _refusal(f'"{self.label}" is a number from '
                               f'{self.minimum:g} to {self.maximum:g}, got '
                               f'{_shown(payload)}.')
            return super().preprocess(payload)

    class FrameSlider(gr.Slider):
        """The frame picker: a whole number, its end checked by the handler
        against the video's frames (the slider's maximum belongs to the
        video last loaded in this session, maybe not the one sent)."""

        is_template = True

        def preprocess(self, payload):
            return _frame_number(payload)

    class CheckedRadio(gr.Radio):
        """A radio whose value is one of its choices (None too is refused:
        the page always sends one)."""

        is_template = True

        def preprocess(self, payload):
            choices = [value for _, value in self.choices]
            if payload not in choices:
                raise _refusal(f'"{self.label}" is '
                               f'{" or ".join(map(repr, choices))}, got '
                               f'{_shown(payload)}.')
            return super().preprocess(payload)


class ClickData(gr.SelectData):
    """A click's event data, its position in the image: gradio's
    SelectData fails on a request without it (gradio_client sends none)
    with a TypeError."""

    def __init__(self, target, data):
        index = data.get('index') if isinstance(data, dict) else None
        if not isinstance(index, (list, tuple)) or len(index) < 2:
            raise _refusal('A click comes with its position in the image, '
                           'event data {"index": [x, y]}, got '
                           f'{_shown(data)}: click on the image in the '
                           'page.')
        super().__init__(target, dict(data, value=data.get('value')))


def _files_in(value) -> list:
    """The file payloads (dicts with a ``path``) anywhere in ``value``."""
    found = []
    client_utils.traverse(value, found.append, client_utils.is_file_obj)
    return found


def _check_no_url(label: str, value) -> None:
    """A file sent as a URL refused: gradio would download it on the
    server (its failure a traceback), and a server fetching any URL a
    client names is a request forgery risk; the page uploads files."""
    for payload in _files_in(value):
        if re.match(r'(?i)https?://', payload['path']):
            raise _refusal(
                f'{label} is a URL, {_shown(payload["path"])}: the app '
                'takes uploaded files only and downloads nothing; download '
                'the file and upload it (gradio_client.handle_file(path) '
                'with a path on your machine).')


def _check_event_data(data) -> None:
    """A file named in an event's data that gradio's own check refuses
    (one not uploaded to this app: a path on the server), said in one
    line: gradio refuses it with a traceback in the log. The app's events
    are clicks, whose data is a position."""
    for payload in _files_in(data):
        try:
            processing_utils.check_all_files_in_cache(payload)
        except gr.Error:
            raise _refusal(
                'The event data names a file that was not uploaded to this '
                f'app, {_shown(payload["path"])}: a click sends only its '
                'position in the image, event data {"index": [x, y]}; '
                'click on the image in the page.') from None


def _check_inputs(block_fn, inputs: list) -> None:
    """What gradio refuses with a traceback before a handler runs, said in
    one line: too few values (a session state's None counted), a file input
    that is not a file (a path sent without gradio_client's
    ``handle_file``: pydantic's many lines), a file sent as a URL
    (:func:`_check_no_url`)."""
    if len(inputs) < len(block_fn.inputs):
        # A request holds a value for every input, a session state's too
        # (None: the server keeps it), as the page and gradio_client send
        # them; counting the states out named a count that is refused too.
        named = [
            "None for the page's state" if block.stateful else
            (block.label or type(block).__name__) for block in block_fn.inputs
        ]
        raise _refusal(f'/{block_fn.api_name} takes {len(named)} value'
                       f'{"s" * (len(named) != 1)} ({", ".join(named)}), '
                       f'got {len(inputs)}.')
    for block, value in zip(block_fn.inputs, inputs):
        model = getattr(block, 'data_model', None)
        if block.stateful or model is None or value is None:
            continue
        try:
            # gradio's own validation, which it runs later (after looking
            # for the file in its cache).
            model.model_validate(value, context=dict(validate_meta=True))
        except pydantic.ValidationError:
            raise _refusal(
                f'{block.label} is a file, sent as gradio_client.'
                f'handle_file(path), got {_shown(value)}.') from None
        _check_no_url(block.label, value)


class CheckedBlocks(gr.Blocks):
    """gr.Blocks whose refusals of a request's inputs and event data are
    one-line messages, not tracebacks in the log: see :func:`_check_inputs`
    and :func:`_check_event_data`."""

    async def call_function(self,
                            block_fn,
                            processed_input,
                            iterator=None,
                            requests=None,
                            event_id=None,
                            event_data=None,
                            *args,
                            **kwargs):
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        # Where gradio checks it: on a handler's first call, when it takes
        # the event's data.
        if (iterator is None and event_data is not None
                and fn.collects_event_data):
            _check_event_data(getattr(event_data, '_data', None))
        return await super().call_function(block_fn, processed_input, iterator,
                                           requests, event_id, event_data,
                                           *args, **kwargs)

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        _check_inputs(block_fn, inputs)
        try:
            return await super().preprocess_data(block_fn, inputs, *args,
                                                 **kwargs)
        except InvalidPathError as err:  # a path it did not upload
            raise _refusal(str(err)) from None
        except gr.Error as err:
            if not err.print_exception:
                raise
            raise _refusal(err.message) from None


def _data_url_bytes(url: str) -> bytes:
    """The bytes of a ``data:`` URL (base64 or percent-encoded)."""
    header, _, data = url.partition(',')
    if not header.endswith(';base64'):
        return urllib.parse.unquote_to_bytes(data)
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error
        raise InputError('The image sent is a data: URL whose base64 data '
                         'is damaged.') from None


class _PageGone(UserError):
    """The request that asked for a video is gone (its page closed or
    reloaded): its worker stops instead of holding the model."""


class _FrameReader:
    """One video's open reader for the frame picker and the index of its
    next frame: a frame after the last one asked for is read on from
    there, so moving the slider forward decodes only the frames between
    (a seek, ``CAP_PROP_POS_FRAMES``, is not frame-exact for every codec,
    and tracking starts from the frame shown). An earlier frame starts
    again from frame 0. Used with :attr:`lock` held: one generator cannot
    be read by two threads."""

    def __init__(self, video, max_pixels):
        self.video, self.max_pixels = video, max_pixels
        self.lock = threading.Lock()
        self._frames, self.position = None, 0

    def read(self, frame: int) -> np.ndarray:
        """Frame ``frame`` (BGR), numbered as :func:`iter_frames` yields
        them; its errors come out as they are, and the reader starts again
        after one."""
        if self._frames is None or frame < self.position:
            self.close()
            self._frames = iter_frames(self.video, self.max_pixels)
        try:
            for image in self._frames:
                self.position += 1
                if self.position > frame:
                    return image
        except BaseException:
            self.close()
            raise
        count = self.position
        self.close()
        raise FramePastEndError(frame, count, 'Frame')

    def close(self) -> None:
        """Release the video's capture (and file) now."""
        if self._frames is not None:
            self._frames.close()
        self._frames, self.position = None, 0


def _image_key(image: np.ndarray) -> str:
    """An image's identity, from its pixels: the prompt tab's features and
    prompts belong to the image they were made on, whichever request made
    them (an upload whose own request was refused, a full queue, leaves the
    page's prompts and the model's features on the image before)."""
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(image.data.cast('B'), digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    return digest.hexdigest()


def _frame_number(frame) -> int:
    """The frame slider's value as a frame index (the page sends whole
    numbers; a request from elsewhere may not)."""
    if isinstance(frame, int) and frame >= 0:
        return int(frame)  # exact, however large (a float is not)
    try:
        number = float(frame)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 0 and number.is_integer()):
        raise _refusal('The frame is a whole number, 0 or more (0 is the '
                       f'first), got {_shown(frame)}.')
    return int(number)


def _check_click(x, y, width: int, height: int) -> None:
    """A click (a point or a box corner) inside the image, said as it is
    made: a corner off the image would otherwise be found only with the
    box, or not at all."""
    try:
        check_prompts([[x, y]], [], width, height)
    except UserError as err:
        raise _user_error(err)


class RapSAMApp:
    """The app's handlers, kept apart from the layout so tests can call
    them directly.

    Args:
        predictor (RapSAMPredictor): For the prompt and panoptic tabs.
        video_predictor (callable | None): Returns the predictor for
            videos; called once, on the first video. None: no video tab (an
            export folder's app).
        out_dir (str): Where video results are written.
        max_frames (int): Longer videos are refused (a video whose length
            its file does not say, once this many frames are done: those
            are kept).
    """

    # Frames the video tab draws clicks on, for all sessions together: a
    # session's state holds only where its frame is, so memory does not
    # grow with the number of visitors; a frame not kept is read again.
    FRAMES_KEPT = 8
    # Videos whose frame picker keeps a reader open where it stopped (each
    # holds a decoder and its file), the most recently used.
    READERS_KEPT = 4

    def __init__(self,
                 predictor,
                 video_predictor,
                 out_dir,
                 max_frames: int = MAX_FRAMES):
        self.predictor = predictor
        self.max_frames = max_frames
        self._video_factory = video_predictor
        self._video = None
        self.out_dir = out_dir
        # One model call at a time: gradio runs handlers in threads, and the
        # prompt tab's cached features belong to one image.
        self.lock = threading.Lock()
        self._factory_lock = threading.Lock()
        self._image_key = None
        self._frames = collections.OrderedDict()
        self._frames_lock = threading.Lock()
        self._readers = collections.OrderedDict()
        self._readers_lock = threading.Lock()

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
        state = self.new_prompts(_image_key(image))
        try:
            with self.lock:
                self._ensure_image(image, state['key'])
        except UserError as err:
            raise _user_error(err)
        return image, ('Click on the image to add a point (or choose "box" '
                       'and click two corners).'), state

    @staticmethod
    def add_click(state: dict, mode: str, x: float, y: float) -> tuple:
        """``state`` with the click added: a point, or a box corner (a box
        takes two clicks, its corners in any order); and a note for the
        page when the click is a first corner. A second corner level with
        the first (no area) is refused, the first kept."""
        state = dict(
            state, points=list(state['points']), boxes=list(state['boxes']))
        if mode == 'box':
            if state['corner'] is None:
                state['corner'] = (x, y)
                return state, 'First corner set: click the opposite corner.'
            x0, y0 = state['corner']
            if x == x0 or y == y0:
                raise gr.Error(
                    f'A box needs its corners apart in x and in y, got '
                    f'({x0:g}, {y0:g}) and ({x:g}, {y:g}): click the corner '
                    'opposite the first.',
                    print_exception=False)
            state['corner'] = None
            state['boxes'].append(
                [min(x0, x), min(y0, y),
                 max(x0, x), max(y0, y)])
        else:
            state['points'].append([x, y])
        return state, ''

    def click(self, image, state: dict, mode: str, x: float, y: float):
        """Add the clicked point (or box corner) and predict every prompt."""
        if image is None:
            raise gr.Error('Upload an image first.', print_exception=False)
        _check_click(x, y, image.shape[1], image.shape[0])
        key = _image_key(image)
        note = ''
        if state.get('key') != key:
            # The prompts were made on another image (this one's upload
            # request did not run): they start over on this one.
            if state['points'] or state['boxes'] or state['corner']:
                note = 'A new image: the prompts of the one before are gone.'
            state = self.new_prompts(key)
        state, click_note = self.add_click(state, mode, x, y)
        return self.render_prompts(image, state,
                                   ' '.join(filter(None, [click_note, note])))

    def clear(self, image, state: dict):
        key = None if image is None else _image_key(image)
        state = self.new_prompts(key)
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
    @property
    def serves_videos(self) -> bool:
        return self._video_factory is not None

    def video_predictor(self) -> RapSAMPredictor:
        if not self.serves_videos:
            raise _refusal(
                'Videos are tracked on PyTorch only (an export folder has no '
                'clip graph): start the app without --export to track them.')
        with self._factory_lock:
            if self._video is None:
                self._video = self._video_factory()
        return self._video

    def _iter_to_files(self, video, name: str, write, summary, progress):
        """Run ``write(predictor, stem, progress, on_frame)`` (a call of
        :func:`track_video_to_files`) in a thread, yielding the page's video
        outputs as frames are drawn: ``(None, None, status, latest drawn
        frame (RGB))`` while it runs, then ``(webm, [mp4, json],
        summary(info), last frame)``. Closing the generator (the page is
        gone) stops the thread at its next frame."""
        folder = osp.join(self.out_dir, uuid.uuid4().hex[:8])
        stem = osp.join(folder, name)
        # Only the newest drawn frame waits for the page: a page slower
        # than the model (or gone) must not pile up every frame.
        outcome, counts, newest = {}, {}, {}
        changed, gone = threading.Condition(), threading.Event()

        def report(done, total):
            counts.update(done=done, total=total)
            if progress is not None and total:
                progress((done, total), unit='frames')

        def on_frame(frame):
            if gone.is_set():
                raise _PageGone('The page that asked for this video is '
                                'gone.')
            with changed:
                newest['frame'] = frame
                changed.notify()

        def work():
            # The model runs here; the page is fed from ``newest``.
            try:
                make_out_dir(folder)
                with self.lock:
                    if gone.is_set():
                        return
                    outcome['info'] = write(self.video_predictor(), stem,
                                            report, on_frame)
            except BaseException as err:  # handed to the request below
                outcome['error'] = err
            finally:
                with changed:
                    newest['done'] = True
                    changed.notify()

        threading.Thread(target=work, daemon=True).start()
        latest, finished = None, False
        try:
            while not finished:
                with changed:
                    changed.wait_for(lambda: newest)
                    frame = newest.pop('frame', None)
                    finished = newest.get('done', False)
                if frame is not None:
                    latest = np.ascontiguousarray(frame[..., ::-1])
                    yield (None, None, f"{counts.get('done', 0)} frames done",
                           latest)
        finally:
            gone.set()
        error = outcome.get('error')
        if isinstance(error, UserError) and osp.isfile(f'{stem}.json'):
            # Stopped part-way: the frames done are written (video_demo's
            # files, the json saying "complete": false), so they are
            # offered with the reason instead of lost behind a message.
            cause = error.__cause__
            reason = _page_text(
                cause if isinstance(cause, UserError) else error, video)
            with open(f'{stem}.json') as f:
                count = json.load(f)['num_frames']
            yield (f'{stem}.webm', [f'{stem}.mp4', f'{stem}.json'],
                   f"**Stopped after {count} frame{'s' * (count != 1)}**: "
                   f'{reason} The frames before it are in the files below.',
                   latest)
            return
        if isinstance(error, UserError):
            raise _user_error(error, video)
        if error is not None:
            raise error
        yield (f'{stem}.webm', [f'{stem}.mp4', f'{stem}.json'],
               summary(outcome['info']), latest)

    def _too_long(self, video, count=None) -> InputError:
        frames = count or f'more than {self.max_frames}'
        return InputError(
            f'{video} has {frames} frames; the app tracks at most '
            f'{self.max_frames} (--max-frames): cut it shorter, or track it '
            'with demo/video_demo.py.')

    def _check_length(self, video):
        """``video``'s frame count when its file says (None when not);
        refused when above ``max_frames``."""
        try:
            count = source_info(video)[1]
            if count is not None and count > self.max_frames:
                raise self._too_long(video, count)
        except UserError as err:
            raise _user_error(err, video)
        return count

    def _at_most(self, results, video):
        """``results`` (``(frame, result)`` pairs) ending with
        :meth:`_too_long`'s error after ``max_frames``: for a video whose
        file does not say its length (the frames done are kept)."""
        for done, pair in enumerate(results):
            if done == self.max_frames:
                raise self._too_long(video)
            yield pair

    def iter_track(self, video, score_thr: float, progress=None):
        """Track instances in ``video``, yielding the page's video outputs
        as the frames are done: ``(None, None, status, latest drawn frame
        (RGB))`` while it runs, then ``(webm, [mp4, json], summary, last
        frame)``."""
        if not video:
            raise gr.Error('Upload a video first.', print_exception=False)
        self._check_length(video)

        def write(predictor, stem, report, on_frame):
            return track_video_to_files(
                predictor,
                video,
                stem,
                score_thr,
                writers=WRITERS,
                progress=report,
                on_frame=on_frame,
                results=self._at_most(
                    predictor.iter_video(video, score_thr=score_thr), video))

        def summary(info):
            return (f"**{info['num_frames']} frames, {len(info['tracks'])} "
                    f'tracks** scoring at least {score_thr:g}.')

        yield from self._iter_to_files(video, _video_name(video), write,
                                       summary, progress)

    def track(self, video, score_thr: float, progress=None):
        """:meth:`iter_track`'s result: ``(webm, [mp4, json], summary)``."""
        *_, last = self.iter_track(video, score_thr, progress)
        return last[:3]

    # click-to-track (video tab) ----------------------------------------
    @staticmethod
    def new_clicks(video=None, frame: int = 0, size=None, count=None) -> dict:
        """Clicks on frame ``frame`` of ``video`` (``count`` frames of
        ``size``, ``(width, height)``); the frame itself is read by
        :meth:`frame_image`."""
        return dict(
            points=[],
            boxes=[],
            corner=None,
            video=video,
            frame=frame,
            size=size,
            count=count)

    def _reader(self, video) -> _FrameReader:
        """``video``'s reader, made when it has none; the readers of the
        videos used least recently beyond :attr:`READERS_KEPT` are
        closed."""
        max_pixels = self.video_predictor().max_pixels
        with self._readers_lock:
            reader = self._readers.get(video)
            if reader is None:
                reader = self._readers[video] = _FrameReader(video, max_pixels)
            self._readers.move_to_end(video)
            dropped = []
            while len(self._readers) > self.READERS_KEPT:
                dropped.append(self._readers.popitem(last=False)[1])
        for old in dropped:
            with old.lock:  # after a read it may be doing
                old.close()
        return reader

    def close(self) -> None:
        """Close the frame picker's readers (the app stops)."""
        with self._readers_lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            with reader.lock:
                reader.close()

    def _kept_frame(self, key):
        with self._frames_lock:
            if key in self._frames:
                self._frames.move_to_end(key)
                return self._frames[key]
        return None

    def frame_image(self, video, frame: int) -> np.ndarray:
        """Frame ``frame`` of ``video`` (RGB), from the frames kept for
        every session (at most :attr:`FRAMES_KEPT`) or read by the video's
        reader (frames passed on the way are not kept)."""
        key = (video, frame)
        image = self._kept_frame(key)
        if image is not None:
            return image
        reader = self._reader(video)
        with reader.lock:
            # Read by another session while this one waited for the lock.
            image = self._kept_frame(key)
            if image is not None:
                return image
            try:
                image = _rgb_to_bgr(reader.read(frame))
            finally:
                with self._readers_lock:
                    dropped = self._readers.get(video) is not reader
                if dropped:  # by another video while this one waited
                    reader.close()
        image.setflags(write=False)  # shared by the sessions on it
        with self._frames_lock:
            self._frames[key] = image
            while len(self._frames) > self.FRAMES_KEPT:
                self._frames.popitem(last=False)
        return image

    def load_video(self, video):
        """A new video: its frame count for the frame picker, frame 0 to
        click on.

        Returns:
            tuple: the frame to show, the picker's new range, a note and
            the clicks' state.
        """
        if not video:
            return (None, _frame_picker(1),
                    'Upload a video to click on its objects.',
                    self.new_clicks())
        count = self._check_length(video)
        try:
            image = self.frame_image(video, 0)
            count = count or self._count_frames(video)
        except UserError as err:
            raise _user_error(err, video)
        state = self.new_clicks(video, 0, (image.shape[1], image.shape[0]),
                                count)
        note = self._clicks_note(state)
        return image, _frame_picker(count), note, state

    def _count_frames(self, video) -> int:
        """For a folder of frames, or a file whose container does not say
        (read up to ``max_frames``, not to the end of a longer one)."""
        frames = iter_frames(video, self.video_predictor().max_pixels)
        count = 0
        for _ in frames:
            count += 1
            if count > self.max_frames:
                frames.close()
                raise self._too_long(video)
        return count

    def _check_frame_exists(self, video, frame: int, counted=None) -> None:
        """Frame ``frame`` of ``video`` refused without reading the video
        when it is far past the frame count its file says (OpenCV's word,
        approximate for some containers: nearer the end the frames are
        read, and the reader's answer is exact); when its file does not
        say, past ``counted`` (the frames :meth:`load_video` counted) or
        past ``max_frames`` (a longer video is refused). A video longer than
        ``max_frames`` is refused as :meth:`load_video` refuses it."""
        if not osp.exists(video):
            return  # the reader says it is gone
        count = self._check_length(video)
        if count is not None:
            if frame >= count + max(FRAME_COUNT_SLACK, count // 4):
                raise _refusal(
                    f"Frame {frame} is past the video's last frame (its "
                    f'file says it has {count} frames; 0 is the first).')
        elif counted is not None:
            if frame >= counted:
                raise _user_error(FramePastEndError(frame, counted, 'Frame'))
        elif frame >= self.max_frames:
            raise _refusal(
                f'Frame {frame} is past the last frame the app reads '
                f'({self.max_frames - 1}: it tracks at most {self.max_frames} '
                'frames, --max-frames): pick an earlier frame.')

    def show_frame(self, video, frame, state: dict):
        """Frame ``frame`` to click on (the clicks of another frame are
        forgotten)."""
        if not video:
            raise gr.Error('Upload a video first.', print_exception=False)
        frame = _frame_number(frame)
        same_video = state.get('video') == video
        if same_video and frame == state.get('frame'):
            return self.render_clicks(state)
        if not (same_video and frame < (state.get('count') or 0)):
            # Not a frame of the slider's range for this video (an API
            # call, another session's video): a frame far past the end
            # must not read the whole video to say so.
            counted = state.get('count') if same_video else None
            self._check_frame_exists(video, frame, counted)
        try:
            image = self.frame_image(video, frame)
        except UserError as err:
            raise _user_error(err, video)
        return self.render_clicks(
            self.new_clicks(video, frame, (image.shape[1], image.shape[0]),
                            state.get('count') if same_video else None))

    @staticmethod
    def _check_session(video, state: dict) -> None:
        """Refused when the clicks' state has no video: none uploaded, or,
        when the page still shows ``video``, one the server no longer has
        for this page (restarted: sessions live in memory, and its uploads
        are deleted when it stops; or the session expired)."""
        if state.get('video') is not None:
            return
        if not video:
            raise gr.Error('Upload a video first.', print_exception=False)
        raise _refusal(
            _gone_text(video)
            or f'The server has not loaded {osp.basename(video)} for this '
            "page (it was restarted, or the page's session expired; an API "
            'client calls /load_video first): upload the video again.')

    def click_frame(self,
                    state: dict,
                    mode: str,
                    x: float,
                    y: float,
                    video=None):
        """Add a click on the shown frame: a point, or a box corner.
        ``video`` is the page's video (None: as if none shown)."""
        self._check_session(video, state)
        # Said now, not after the video has been read.
        _check_click(x, y, *state['size'])
        state, note = self.add_click(state, mode, x, y)
        return self.render_clicks(state, note)

    def clear_clicks(self, state: dict, video=None):
        """The shown frame without its clicks. ``video`` is the page's video
        (None: as if none shown); one the server has no state for is said
        as a click on it says it (:meth:`_check_session`)."""
        if video:
            self._check_session(video, state)
        return self.render_clicks(
            self.new_clicks(
                state.get('video'), state.get('frame', 0), state.get('size'),
                state.get('count')))

    @staticmethod
    def _clicks_note(state: dict) -> str:
        count = state.get('count')
        num = len(state['points']) + len(state['boxes'])
        where = f"frame {state['frame']}" + (f' of {count}' if count else '')
        if not num:
            return (f'Click the objects to track on {where} (or choose '
                    '"box" and click two corners), then "Track clicked '
                    'objects".')
        return (f'**{num} object{"s" * (num != 1)}** clicked on {where}: '
                '"Track clicked objects" follows them through the video.')

    def render_clicks(self, state: dict, note: str = ''):
        """The frame with its clicks drawn (each in its object's track
        colour), a note, and the state."""
        video = state.get('video')
        if video is None:
            return None, 'Upload a video to click on its objects.', state
        try:
            image = self.frame_image(video, state['frame'])
        except UserError as err:
            raise _user_error(err, video)
        points, boxes = state['points'], state['boxes']
        # Track ids follow the predictor's order: points, then boxes.
        colors = [id_color(i + 1) for i in range(len(points) + len(boxes))]
        if state['corner'] is not None:
            points = points + [list(state['corner'])]
            colors = colors[:len(state['points'])] + [
                (255, 255, 255)
            ] + colors[len(state['points']):]
        shown = draw_prompts(_rgb_to_bgr(image), points, boxes, colors)
        text = '\n\n'.join(filter(None, [self._clicks_note(state), note]))
        return _rgb_to_bgr(shown), text, state

    def iter_track_clicks(self, video, state: dict, progress=None):
        """Follow the objects clicked on one frame through ``video``
        (before that frame and after it), yielding the page's outputs as
        :meth:`iter_track` does; the files are video_demo.py's
        ``--frame K --points ... --boxes ...`` ones."""
        if not video:
            raise gr.Error('Upload a video first.', print_exception=False)
        self._check_session(video, state)
        points, boxes = state['points'], state['boxes']
        if not points and not boxes:
            raise gr.Error(
                'Click on the frame to choose the objects to track '
                'first.',
                print_exception=False)
        if state.get('video') != video:
            # This video's upload request did not run (a full queue):
            # the clicks are on a frame of the video before.
            raise gr.Error(
                'The clicks were made on another video: pick a frame of '
                'this one with the slider (or upload it again), then click '
                'its objects.',
                print_exception=False)
        self._check_length(video)
        frame = state['frame']

        def write(predictor, stem, report, on_frame):
            # The page calls it Frame, not the API's frame_index (raised up
            # front, or once a file's frames run out).
            try:
                results, extra = prompt_tracks(predictor, video, frame, points,
                                               boxes)
                return track_video_to_files(
                    predictor,
                    video,
                    stem,
                    writers=WRITERS,
                    progress=report,
                    on_frame=on_frame,
                    results=self._at_most(results, video),
                    extra=extra)
            except FramePastEndError as err:
                raise err.named('Frame') from None

        yield from self._iter_to_files(video,
                                       _video_name(video) + '_clicked', write,
                                       _track_table, progress)

    def track_clicks(self, video, state: dict, progress=None):
        """:meth:`iter_track_clicks`' result: ``(webm, [mp4, json],
        summary)``."""
        *_, last = self.iter_track_clicks(video, state, progress)
        return last[:3]


# A frame this many past the count a video's file says (or a quarter of
# it, if more) is refused without reading the video; nearer, the frames
# are read (OpenCV's count is approximate for some containers).
FRAME_COUNT_SLACK = 30

# Pixels: the video tab's input and results fit one screen.
VIDEO_HEIGHT = 320

# The page plays the webm (Chromium and Firefox play VP8; OpenCV writes no
# H.264); the mp4 is for download.
WRITERS = (('webm', 'VP80'), ('mp4', 'mp4v'))


def _frame_picker(count: int) -> gr.Slider:
    """The frame slider's update for a video of ``count`` frames (a slider
    needs two values: one frame shows 0..1, fixed)."""
    return gr.Slider(
        minimum=0, maximum=max(count - 1, 1), value=0, interactive=count > 1)


def _video_name(video: str) -> str:
    return osp.splitext(osp.basename(video))[0]


def _track_table(info: dict) -> str:
    """The clicked objects' summary: per object its prompt, class and how
    well a track matched it on the clicked frame."""
    classes = {t['id']: t['category'] for t in info['tracks']}
    rows = [
        f"| {p['id']} | {p['type']} | {classes.get(p['id'], '-')} "
        f"| {p.get('match_iou', 0):.2f} |" for p in info['prompts']
    ]
    num = len(info['prompts'])
    return '\n'.join([
        f"**{info['num_frames']} frames, {num} object{'s' * (num != 1)}** "
        f"clicked on frame {info['prompt_frame']}.", '',
        '| # | prompt | class | match IoU |', '|---|---|---|---|'
    ] + rows)


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


def _video_tab(app: RapSAMApp) -> None:
    """The video tab, inside the app's Blocks."""
    with gr.Tab('Video instances', id='video'):
        clicks = gr.State(app.new_clicks())
        with gr.Row():
            vid_in = gr.Video(
                label='Video',
                sources=['upload'],
                height=VIDEO_HEIGHT,
                elem_id='video-input')
            with gr.Column():
                track_canvas = gr.Image(
                    label='Click the objects to track',
                    interactive=False,
                    format='png',
                    elem_id='track-canvas')
                track_frame = FrameSlider(
                    0,
                    1,
                    value=0,
                    interactive=False,
                    step=1,
                    label='Frame to click on (0 is the first)',
                    elem_id='track-frame')
                with gr.Row():
                    track_mode = CheckedRadio(['point', 'box'],
                                              value='point',
                                              label='A click adds a',
                                              elem_id='track-mode')
                    track_clear = gr.Button(
                        'Clear clicks', elem_id='track-clear')
                track_note = gr.Markdown(
                    'Upload a video to click on its objects.',
                    elem_id='track-status')
        with gr.Row():
            thr = CheckedSlider(
                0,
                1,
                value=0.5,
                step=0.05,
                label='Show instances scoring at least',
                elem_id='video-thr')
            vid_btn = gr.Button(
                'Track all instances', variant='primary', elem_id='video-run')
            track_btn = gr.Button(
                'Track clicked objects',
                variant='primary',
                elem_id='track-run')
        with gr.Row():
            vid_live = gr.Image(
                label='Tracks as they come',
                interactive=False,
                height=VIDEO_HEIGHT,
                elem_id='video-live')
            vid_out = gr.Video(
                label='Tracks',
                interactive=False,
                height=VIDEO_HEIGHT,
                elem_id='video-output')
        vid_status = gr.Markdown(elem_id='video-status')
        vid_files = gr.File(
            label='Annotated mp4 and tracks json', elem_id='video-files')
        outputs = [vid_out, vid_files, vid_status, vid_live]

        def on_track(video, score_thr, progress=gr.Progress()):
            yield from app.iter_track(video, score_thr, progress)

        def on_track_clicks(video, state, progress=gr.Progress()):
            yield from app.iter_track_clicks(video, state, progress)

        def on_frame_click(video, st, md, evt: ClickData):
            return app.click_frame(st, md, *evt.index[:2], video)

        vid_in.change(app.load_video, vid_in,
                      [track_canvas, track_frame, track_note, clicks])
        # 'always_last': dragging the slider reads only the frame it
        # stops on, not every frame it passes.
        track_frame.input(
            app.show_frame, [vid_in, track_frame, clicks],
            [track_canvas, track_note, clicks],
            trigger_mode='always_last')
        # The video too (and to "Clear clicks"): a page open since before a
        # restart still shows it, while the server has no clicks state for
        # the page.
        track_canvas.select(on_frame_click, [vid_in, clicks, track_mode],
                            [track_canvas, track_note, clicks])
        track_clear.click(app.clear_clicks, [clicks, vid_in],
                          [track_canvas, track_note, clicks])
        vid_btn.click(on_track, [vid_in, thr], outputs)
        track_btn.click(on_track_clicks, [vid_in, clicks], outputs)


def build_ui(app: RapSAMApp) -> gr.Blocks:
    with CheckedBlocks(
            title='RAP-SAM', delete_cache=(3600, CACHE_SECONDS)) as ui:
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
                    mode = CheckedRadio(['point', 'box'],
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

            def on_select(img, st, md, evt: ClickData):
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
        if app.serves_videos:
            _video_tab(app)
        else:
            gr.Markdown(
                'Videos are tracked on PyTorch (an export folder has no '
                'clip graph): start the app without --export for the video '
                'tab.',
                elem_id='no-video-tab')
    return ui


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
    try:
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
    except BaseException:  # a Ctrl+C once uvicorn serves, a taken port
        ui.close()
        raise
    return ui


def _check_address(host: str, port: int) -> None:
    """Bind ``host:port`` once before gradio does: a taken port or a host
    that is not this machine's is said with the system's reason (gradio
    says "Cannot find empty port" whatever it is, after uvicorn's own log
    line)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            # As uvicorn binds: a port left in TIME_WAIT is free to it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as err:  # socket.gaierror included
        reason = err.strerror or str(err)
        raise OutputError(f'Cannot serve on {host}:{port} ({reason}): '
                          'choose another --port or --host.') from None


def load_predictors(args) -> tuple:
    """The image predictor (--config or --export, with --post) and the
    function building the video predictor (--video-config) on the first
    video: its post-processing stays exact whatever --post, as the clip
    linker reads every query's exact masks (and the predictor refuses
    anything else). With --export there is no video predictor (None)."""
    image = load_predictor(args, args.config, **predictor_kwargs(args))
    if args.export is not None:
        return image, None

    def video() -> RapSAMPredictor:
        return load_predictor(
            args, args.video_config, post='exact', **predictor_kwargs(args))

    return image, video


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        # Read on the first video otherwise: a wrong path would start an
        # app whose video tab only fails.
        if args.video_config is not None:
            read_config(args.video_config)
        predictor, video_predictor = load_predictors(args)
        # Before the app's folder is made; after the checkpoint, whose
        # problems are said whatever the port.
        _check_address(args.host, args.port)
        app = RapSAMApp(predictor, video_predictor,
                        tempfile.mkdtemp(prefix='rap_sam_app_'),
                        args.max_frames)
        ui = None
        # Ctrl+C and SIGTERM (a supervisor's stop, `docker stop`) are how the
        # app is stopped: both end it quietly, with status 0, from the moment
        # gradio starts serving (its page may answer before launch returns).
        try:
            try:
                ui = launch(app, args.host, args.port, args.max_queue,
                            args.max_file_size)
            except OSError as err:  # gradio's "Cannot find empty port" and kin
                reason = str(err).split('. ')[0].rstrip('.')
                raise OutputError(f'Cannot serve on {args.host}:{args.port} '
                                  f'({reason}): choose another --port or '
                                  '--host.') from err
            kept = f'; the videos it makes are kept in {app.out_dir}' \
                if app.serves_videos else ''
            print(
                f'RAP-SAM app on http://{args.host}:{args.port} (Ctrl+C '
                f'stops it){kept}',
                flush=True)
            while True:  # gradio serves on its own threads
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            if ui is not None:
                ui.close()
            app.close()
            if ui is not None:
                # With a request still running uvicorn's shutdown outlasts
                # gradio's wait for it, and gradio's own clean-up of its
                # cache never runs.
                delete_files_created_by_app(ui, age=None)
            # Left where videos were made; an empty one (none made, or the
            # app stopped before it served) is removed.
            with contextlib.suppress(OSError):
                os.rmdir(app.out_dir)


if __name__ == '__main__':
    main()
