"""The browser demo's server: each image is encoded here, once.

The page (demo/web/) runs the prompt decoder itself, in onnxruntime-web, so
every click answers without a round trip.

    python demo/web_server.py --weights rapsam_r50_12e.pth [--port 8000]
    python demo/web_server.py --export exports/coco        # an export folder

then open http://127.0.0.1:8000. Routes:

    GET  /                          the page (demo/web/index.html)
    GET  /<file>                    the page's files (demo/web/*.js, *.css)
    GET  /ort/<file>                onnxruntime-web from the local npm install
                                    (demo/web/node_modules, `make web-deps`)
    GET  /api/config                what the page needs from deploy.json
    GET  /model/prompt_decoder.onnx the export's prompt decoder
    POST /api/encode                an image file's bytes -> its features
                                    (rap_sam.deploy.feature_message)

Bad input (not an image, too many pixels, too many bytes) is an HTTP 4xx
with a one-line JSON ``{"error": ...}``, logged as one line.
"""
import argparse
import json
import os
import os.path as osp
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from demo_cli import (REPO, base_parser, check_export_args, guard_interrupts,
                      port_number, positive_int)

WEB_DIR = osp.join(REPO, 'demo', 'web')
#: The longest --timeout: a day (Python's sockets refuse timeouts past
#: about 292 years with an OverflowError, raised on every connection).
MAX_TIMEOUT_S = 24 * 60 * 60


def timeout_seconds(text: str) -> int:
    """argparse type: whole seconds, 1 to :data:`MAX_TIMEOUT_S`."""
    value = positive_int(text)
    if value > MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f'at most {MAX_TIMEOUT_S} seconds (a day), got {text!r}')
    return value


ORT_DIR = osp.join(WEB_DIR, 'node_modules', 'onnxruntime-web', 'dist')
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'rap_sam', 'eval_rap_sam_coco.py')


def parse_args(argv=None):
    parser = base_parser(__doc__, backends=False)
    parser.add_argument(
        '--config',
        default=None,
        help='an eval config under configs/rap_sam (with --weights; '
        f'default: {osp.relpath(DEFAULT_CONFIG, REPO)}; not with --export)')
    parser.add_argument(
        '--export',
        default=None,
        help='an export folder (tools/deploy/export.py) instead of '
        'config and weights')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument(
        '--port',
        type=port_number,
        default=8000,
        help='0 picks a free port (default %(default)s)')
    parser.add_argument(
        '--threads',
        type=positive_int,
        default=None,
        help="the image encoder's threads (default: all cores)")
    parser.add_argument(
        '--timeout',
        type=timeout_seconds,
        default=60,
        metavar='SECONDS',
        help='close a connection silent this long, idle or mid-upload '
        '(default %(default)s)')
    parser.add_argument(
        '--float32',
        action='store_true',
        help='send features as float32 (default float16: half the bytes, '
        'masks within IoU 0.999)')
    args = parser.parse_args(argv)
    # The server encodes on ONNX Runtime whatever it is given: the options
    # an export folder fixes are refused as the demos refuse them.
    args.backend = args.precision = None
    if args.export is None:
        args.config = args.config or DEFAULT_CONFIG
    check_export_args(parser, args, '--config')
    return args


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

from demo_cli import load_predictor, user_errors

from rap_sam.apis import InputError, RapSAMPredictor
from rap_sam.apis.inputs import check_pixels, image_size
from rap_sam.deploy.backends.deployed_model import CLICK_RADIUS
from rap_sam.deploy.feature_message import encode_features

#: The scale images are resized to fit by default: the real-time preset
#: (docs/deploy.md), where a click decodes in the browser within the
#: 50 ms goal on 2 cores (800 x 1333 takes about 2.5x longer).
DEFAULT_SCALE = (864, 512)
#: Upload size limit: a 40-megapixel JPEG is about 20 MB.
MAX_UPLOAD_BYTES = 64 * 2**20
TYPES = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.wasm': 'application/wasm',
    '.png': 'image/png',
    '.onnx': 'application/octet-stream',
}
# Cross-origin isolation (COOP + COEP) lets onnxruntime-web use
# SharedArrayBuffer, i.e. threads.
ISOLATION_HEADERS = {
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
}

ENCODE_ROUTE = '/api/encode'
CONFIG_ROUTE = '/api/config'
DECODER_ROUTE = '/model/prompt_decoder.onnx'
#: The routes answered to GET (and HEAD) besides the page's files.
GET_ROUTES = (CONFIG_ROUTE, DECODER_ROUTE)


class HTTPError(Exception):
    """A request the server refuses: its status and one-line message."""

    def __init__(self, status: int, message: str, headers: dict = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class WebDemo:
    """What the routes serve: the predictor's encoder and export, the
    page's files and the feature messages."""

    def __init__(self, predictor: RapSAMPredictor, half: bool = True):
        self.predictor = predictor
        self.runtime = predictor.runtime
        self.half = half
        # One image encoded at a time: the runtime already uses every core
        # it was given, and two large images at once would double memory.
        self.lock = threading.Lock()

    @property
    def decoder_path(self) -> str:
        spec = self.runtime.spec
        return osp.join(self.runtime.export_dir,
                        spec.graph_file('prompt_decoder'))

    def config(self) -> dict:
        spec = self.runtime.spec
        return dict(
            decoder_url=DECODER_ROUTE,
            feature_names=spec.feature_names,
            boxes_input=spec.boxes_input,
            img_shape_input=(spec.img_shape_input if spec.img_shape_input
                             in spec.input_names('prompt_decoder') else None),
            img_shape_dtype=spec.img_shape_dtype,
            outputs=spec.output_names('prompt_decoder'),
            click_radius=CLICK_RADIUS,
            scale=list(self.runtime.scale),
            max_pixels=self.predictor.max_pixels,
            max_upload_bytes=MAX_UPLOAD_BYTES,
            classes=self.runtime.class_names)

    def encode(self, data: bytes) -> bytes:
        """An image file's bytes -> its feature message."""
        limit = self.predictor.max_pixels
        try:
            width, height = image_size(data, limit)
        except InputError as err:
            # Not an image; or one beyond PIL's own ceiling, whose header
            # gives no size, only that it is too large.
            raise HTTPError(413 if 'megapixels' in str(err) else 400, str(err))
        try:
            check_pixels(width, height, 'The image', limit)
        except InputError as err:
            raise HTTPError(413, str(err))
        try:
            img = self.predictor.read_image(data)
        except InputError as err:  # a corrupt file past its header
            raise HTTPError(400, str(err))
        with self.lock:
            image, meta = self.runtime.preprocess(img)
            features = self.runtime.encode(image)
        return encode_features(features, meta, half=self.half)

    @staticmethod
    def static_file(path: str) -> str:
        """The file a GET path names, or HTTPError 404."""
        if path in ('', '/'):
            path = '/index.html'
        name = osp.basename(path)
        if path.startswith('/ort/'):
            folder = ORT_DIR
            if not osp.isdir(folder):
                raise HTTPError(
                    404, 'onnxruntime-web is not installed: run `make '
                    'web-deps` (npm ci in demo/web).')
        else:
            folder = WEB_DIR
        # One level only, known types only: nothing else is served.
        if path.count('/') != (2 if folder == ORT_DIR else 1) or \
                osp.splitext(name)[1] not in TYPES or name.startswith('.'):
            raise HTTPError(404, f'No such page: {path}')
        full = osp.join(folder, name)
        if not osp.isfile(full):
            raise HTTPError(404, f'No such page: {path}')
        return full


def make_handler(demo: WebDemo, timeout_s: float = 60):

    class Handler(BaseHTTPRequestHandler):
        server_version = 'RapSAMWebDemo'
        protocol_version = 'HTTP/1.1'
        # Each connection holds a thread: without a limit, a client that
        # sends less than its Content-Length, or keeps a connection open
        # and says nothing, holds it for good.
        timeout = timeout_s

        def log_error(self, fmt, *args):
            # http.server's line for a silent connection closed between
            # requests: a browser's idle keep-alive, not an error.
            if not fmt.startswith('Request timed out'):
                super().log_error(fmt, *args)

        def parse_request(self) -> bool:
            self.body_read = False
            return super().parse_request()

        def body_unread(self) -> bool:
            """Whether the request came with a body this handler has not
            read: left on the connection, it would be parsed as the next
            request."""
            if self.body_read:
                return False
            length = self.headers.get('Content-Length', '0').strip()
            return (length != '0' or 'Transfer-Encoding' in self.headers)

        def log_message(self, fmt, *args):  # one line per request
            sys.stderr.write('%s %s\n' % (self.address_string(), fmt % args))

        def send_body(self,
                      status: int,
                      body: bytes,
                      content_type: str,
                      extra: dict = None) -> None:
            self.send_response(status)
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            if self.body_unread():
                self.close_connection = True
                self.send_header('Connection', 'close')
            for key, value in {**ISOLATION_HEADERS, **(extra or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != 'HEAD':
                try:
                    self.wfile.write(body)
                except ConnectionError:  # the page went away meanwhile
                    self.close_connection = True

        def send_json(self,
                      status: int,
                      value: dict,
                      extra: dict = None) -> None:
            self.send_body(status,
                           json.dumps(value).encode(), 'application/json',
                           extra)

        def send_error_message(self, err: HTTPError) -> None:
            self.log_message('"%s" %d %s', self.requestline, err.status,
                             str(err))
            self.send_json(err.status, dict(error=str(err)), err.headers)

        def log_request(self, code='-', size='-'):
            if isinstance(code, int) and code >= 400:
                return  # send_error_message logged it with its reason
            super().log_request(code, size)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path == CONFIG_ROUTE:
                    return self.send_json(200, demo.config())
                if path == ENCODE_ROUTE:
                    raise HTTPError(
                        405, f'{ENCODE_ROUTE} takes a POST of an image '
                        "file's bytes.", {'Allow': 'POST'})
                if path == DECODER_ROUTE:
                    try:
                        with open(demo.decoder_path, 'rb') as f:
                            body = f.read()
                    except OSError:
                        raise HTTPError(
                            404, 'The prompt decoder is missing: '
                            f'{demo.decoder_path} cannot be read (re-export '
                            'the model or restart the server).')
                    return self.send_body(200, body, TYPES['.onnx'])
                full = demo.static_file(path)
                with open(full, 'rb') as f:
                    body = f.read()
                self.send_body(200, body, TYPES[osp.splitext(full)[1]])
            except HTTPError as err:
                self.send_error_message(err)

        do_HEAD = do_GET

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            try:
                if path in GET_ROUTES:
                    raise HTTPError(405, f'{path} is read with GET.',
                                    {'Allow': 'GET, HEAD'})
                if path != ENCODE_ROUTE:
                    raise HTTPError(404, f'No such route: POST {path}')
                try:
                    length = int(self.headers.get('Content-Length', ''))
                except ValueError:
                    raise HTTPError(
                        411, 'Send the image with a '
                        'Content-Length header.')
                if length < 0:
                    raise HTTPError(
                        400, f'Content-Length {length} is negative: send '
                        "the image's size in bytes.")
                if length > MAX_UPLOAD_BYTES:
                    # Not read: the connection closes after the answer.
                    raise HTTPError(
                        413, f'The upload is {length / 2**20:.1f} MB, above '
                        f'the limit of {MAX_UPLOAD_BYTES // 2**20} MB: '
                        'downscale the image.')
                try:
                    data = self.rfile.read(length)
                except TimeoutError:
                    raise HTTPError(
                        408, f'The upload stopped before its {length} '
                        f'bytes arrived (nothing for {timeout_s} s): send the '
                        'whole image file.')
                self.body_read = True
                body = demo.encode(data)
                self.send_body(200, body, 'application/octet-stream')
            except HTTPError as err:
                self.send_error_message(err)

    return Handler


def check_encodable(export_dir: str) -> None:
    """Refuse an export folder in a precision ONNX Runtime does not run
    (bf16, OpenVINO's): the runtime's own refusal advises another backend,
    which this server has no option to choose."""
    from rap_sam.deploy.backends import OnnxRuntimeBackend
    from rap_sam.deploy.deploy_spec import read_deploy_spec
    runs = OnnxRuntimeBackend.precisions
    # The graphs are checked by from_export, next: only deploy.json here.
    precision = read_deploy_spec(export_dir, check_graphs=False).precision
    if precision not in runs:
        raise InputError(
            f'{export_dir} is exported in {precision} (its deploy.json); the '
            'web demo encodes on ONNX Runtime, which runs '
            f'{" and ".join(runs)} folders: give one of those to --export '
            '(tools/deploy/export.py CONFIG --checkpoint CKPT --out DIR), or '
            '--weights CKPT.')


def build_demo(args) -> WebDemo:
    if args.export:
        check_encodable(args.export)
        predictor = RapSAMPredictor.from_export(
            args.export, 'onnxruntime', num_threads=args.threads)
    else:
        args.backend, args.precision = 'onnxruntime', 'fp32'
        if args.scale is None:
            args.scale = DEFAULT_SCALE
        if args.device not in (None, 'cpu'):
            raise InputError('The web demo encodes on the CPU (ONNX '
                             f'Runtime); --device {args.device} is not used.')
        args.device = 'cpu'
        from demo_cli import predictor_kwargs
        predictor = load_predictor(args, args.config, **predictor_kwargs(args))
    return WebDemo(predictor, half=not args.float32)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        demo = build_demo(args)
        try:
            server = ThreadingHTTPServer((args.host, args.port),
                                         make_handler(demo, args.timeout))
        except OSError as err:
            raise InputError(f'Cannot listen on {args.host}:{args.port} '
                             f'({err.strerror}): choose another --port or '
                             '--host.')
    if not osp.isdir(ORT_DIR):
        print(
            'warning: onnxruntime-web is not installed; run `make '
            'web-deps` (npm ci in demo/web) or the page cannot decode.',
            file=sys.stderr)
    host, port = server.server_address[:2]
    print(
        f'Serving the RAP-SAM web demo on http://{host}:{port} '
        f'(export: {demo.runtime.export_dir})',
        flush=True)
    # Ctrl+C and SIGTERM (a supervisor's or `docker stop`'s) are how a
    # server is stopped: both end it quietly, with status 0.
    with user_errors():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    main()
