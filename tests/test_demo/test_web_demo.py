"""The browser demo: demo/web_server.py as a subprocess (the README's
command line) and its page in headless Chromium, whose prompt decoder runs
in onnxruntime-web; the page's masks against ``predict_prompts``."""
import json
import os
import os.path as osp
import shutil
import signal
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
from browser import (add_web_prompt, chromium_paths, open_in_web_demo,
                     page_data, serve_web_demo, start_browser, text_of,
                     wait_until, wait_web_idle)
from helpers import (REPO, assert_ran, assert_usage_error, assert_user_error,
                     run_script)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from rap_sam.apis import RapSAMPredictor

ORT_DIST = osp.join(REPO, 'demo', 'web', 'node_modules', 'onnxruntime-web',
                    'dist')
SCALE = (96, 64)
BENCHMARK = 'tools/analysis/browser_click_benchmark.py'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels (its header only)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IEND', b'')


@pytest.fixture(scope='module')
def server(weights, tmp_path_factory):
    """The server on seeded weights at a small scale, its export in a
    temporary cache; yields a dict (url, port, log, proc, export, root,
    env: the server's environment, cache: the variable it adds, for
    run_script)."""
    root = tmp_path_factory.mktemp('web')
    cache = dict(RAP_SAM_EXPORT_CACHE=str(root / 'cache'))
    env = dict(os.environ, **cache)
    port = _free_port()
    args = [
        '--weights', weights, '--scale', *map(str, SCALE), '--port',
        str(port), '--threads', '1'
    ]
    log = str(root / 'server.log')
    proc, url = serve_web_demo(args, log, env)
    with open(log) as f:
        export = f.read().split('(export: ')[1].split(')')[0]
    info = dict(
        url=url,
        port=port,
        log=log,
        proc=proc,
        env=env,
        cache=cache,
        export=export,
        root=root)
    yield info
    info['proc'].kill()
    info['proc'].wait()


@pytest.fixture(scope='module')
def predictor(server):
    """The Python API on the server's export."""
    return RapSAMPredictor.from_export(server['export'], 'onnxruntime')


def _get(url: str, data: bytes = None):
    """(status, headers, body) of a request, 4xx answers included."""
    try:
        with urllib.request.urlopen(
                urllib.request.Request(url, data=data), timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_routes_and_bad_requests(server, small_photo):
    url = server['url']
    status, headers, body = _get(url + '/')
    assert status == 200 and b'<canvas id="mask-canvas">' in body
    # What crossOriginIsolated (onnxruntime-web's threads) needs.
    assert headers['Cross-Origin-Opener-Policy'] == 'same-origin'
    assert headers['Cross-Origin-Embedder-Policy'] == 'require-corp'
    config = json.loads(_get(url + '/api/config')[2])
    assert config['feature_names'] == ['basis']
    assert config['img_shape_dtype'] == 'int64'
    assert config['scale'] == list(SCALE) and config['click_radius'] == 3
    status, _, body = _get(url + config['decoder_url'])
    with open(osp.join(server['export'], 'prompt_decoder.onnx'), 'rb') as f:
        assert status == 200 and body == f.read()
    if osp.isdir(ORT_DIST):
        status, headers, body = _get(url + '/ort/ort-wasm-simd-threaded.wasm')
        assert status == 200 and body[:4] == b'\x00asm'
        assert headers['Content-Type'] == 'application/wasm'
    with open(small_photo, 'rb') as f:
        status, headers, body = _get(url + '/api/encode', f.read())
    assert status == 200 and body[:8] == b'RSAMFEAT'
    # Without onnxruntime-web every /ort/ path is refused with how to
    # install it.
    ort_refusal = ('No such page' if osp.isdir(ORT_DIST) else
                   'onnxruntime-web is not installed: run `make web-deps`')
    for path, message in [('/setup.py', 'No such page'),
                          ('/node_modules/x.js', 'No such page'),
                          ('/ort/../package.json', ort_refusal),
                          ('/nothing.html', 'No such page')]:
        status, _, body = _get(url + path)
        assert status == 404 and message in json.loads(body)['error'], body
    for data, code, message in [
        (b'just some notes\n', 400, 'Cannot read the uploaded data as an '
         'image'),
        (_png_header(10000, 10000), 413, 'The image is 10000 x 10000 pixels '
         '(100.0 megapixels), above the limit'),
        (_png_header(20000, 20000), 413, 'megapixels'),
    ]:
        status, headers, body = _get(url + '/api/encode', data)
        assert status == code, body
        assert headers['Content-Type'] == 'application/json'
        error = json.loads(body)['error']
        assert message in error and '\n' not in error
    with open(server['log']) as f:
        log = f.read()
    assert 'Traceback' not in log
    assert '"POST /api/encode HTTP/1.1" 413 The image is 10000' in log


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is on a new connection and return all the
    server sends until it closes the connection (or 30 s pass)."""
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        s.sendall(request)
        answer = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def _answers(raw: bytes) -> list:
    """``(status, json body)`` of each HTTP answer in ``raw``."""
    answers = []
    while raw:
        head, raw = raw.split(b'\r\n\r\n', 1)
        lines = head.decode().split('\r\n')
        headers = dict(line.split(': ', 1) for line in lines[1:])
        length = int(headers['Content-Length'])
        answers.append((int(lines[0].split()[1]), json.loads(raw[:length])))
        raw = raw[length:]
    return answers


def test_a_route_asked_with_the_wrong_method_is_405(server):
    """GET of the encoder route and POST of a GET route are 405 with the
    methods the route takes (they were 404 "No such page")."""
    port = server['port']
    cases = [
        (b'GET /api/encode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
         'POST', "/api/encode takes a POST of an image file's bytes."),
        (b'POST /api/config HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n'
         b'Connection: close\r\n\r\n', 'GET, HEAD',
         '/api/config is read with GET.'),
    ]
    for request, allow, message in cases:
        raw = _raw_exchange(port, request)
        assert _answers(raw) == [(405, dict(error=message))]
        assert f'\r\nAllow: {allow}\r\n'.encode() in raw


def test_raw_requests_with_bad_or_unread_bodies(server):
    """A negative Content-Length is a 400 (it had been a traceback in the
    log and no answer); an error answer to a request whose body is left
    unread closes the connection, so the body is not taken for the next
    request (``Bad request syntax ('x')`` in the log)."""
    with open(server['log']) as f:
        before = len(f.read())
    port = server['port']
    negative = (b'POST /api/encode HTTP/1.1\r\nHost: x\r\n'
                b'Content-Length: -5\r\n\r\n')
    assert _answers(_raw_exchange(port, negative)) == [
        (400,
         dict(error='Content-Length -5 is negative: send the image\'s '
              'size in bytes.'))
    ]
    # Two requests on one connection, the first with a body no route reads:
    # the answer to it is the only one, and the connection is closed.
    body_then_next = (b'POST /nowhere HTTP/1.1\r\nHost: x\r\n'
                      b'Content-Length: 1\r\n\r\nx'
                      b'GET /api/config HTTP/1.1\r\nHost: x\r\n\r\n')
    assert _answers(_raw_exchange(port, body_then_next)) == [
        (404, dict(error='No such route: POST /nowhere'))
    ]
    # A GET carrying a body (which nothing reads) is served, then closed.
    get_with_body = (b'GET /api/config HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Length: 1\r\n\r\nx'
                     b'GET /api/config HTTP/1.1\r\nHost: x\r\n\r\n')
    [(status, _)] = _answers(_raw_exchange(port, get_with_body))
    assert status == 200
    # Keep-alive still works where the body is read.
    two_configs = (b'GET /api/config HTTP/1.1\r\nHost: x\r\n\r\n'
                   b'GET /api/config HTTP/1.1\r\nHost: x\r\n'
                   b'Connection: close\r\n\r\n')
    assert [a[0]
            for a in _answers(_raw_exchange(port, two_configs))] == [200, 200]
    with open(server['log']) as f:
        log = f.read()[before:].splitlines()
    assert [line.split(' ', 1)[1] for line in log if ' 4' in line] == [
        '"POST /api/encode HTTP/1.1" 400 Content-Length -5 is negative: '
        "send the image's size in bytes.",
        '"POST /nowhere HTTP/1.1" 404 No such route: POST /nowhere',
    ]
    assert not [
        line for line in log if 'Traceback' in line or 'Bad request' in line
    ], log


def test_a_silent_connection_is_closed_after_the_timeout(server, tmp_path):
    """An upload shorter than its Content-Length is a 408 after --timeout
    seconds (it held a thread for good), a silent connection is closed
    without a log line, and other connections are served meanwhile."""
    log = str(tmp_path / 'server.log')
    port = _free_port()
    proc, url = serve_web_demo(
        ['--export', server['export'], '--port',
         str(port), '--timeout', '1'], log, server['env'])
    try:
        short = (b'POST /api/encode HTTP/1.1\r\nHost: x\r\n'
                 b'Content-Length: 100\r\n\r\n0123456789')
        with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
            s.sendall(short)
            # Held: another client is served while this upload waits.
            with urllib.request.urlopen(url + '/api/config') as answer:
                assert answer.status == 200
            raw = b''
            while chunk := s.recv(65536):
                raw += chunk
        assert _answers(raw) == [
            (408,
             dict(error='The upload stopped before its 100 bytes arrived '
                  '(nothing for 1 s): send the whole image file.'))
        ]
        assert b'Connection: close' in raw
        with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
            assert s.recv(1) == b''  # closed by the server, unanswered
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with open(log) as f:
        lines = f.read().splitlines()
    errors = [line.split(' ', 1)[1] for line in lines if ' 4' in line]
    assert errors == [
        '"POST /api/encode HTTP/1.1" 408 The upload stopped before its 100 '
        'bytes arrived (nothing for 1 s): send the whole image file.'
    ], lines
    assert not [
        line for line in lines if 'Traceback' in line or 'timed out' in line
    ], lines


def _require_browser():
    if chromium_paths() is None:
        pytest.skip('chromium / chromedriver not installed '
                    '(apt-get install chromium chromium-driver)')
    if not osp.isdir(ORT_DIST):
        pytest.skip('onnxruntime-web not installed: make web-deps '
                    '(npm ci in demo/web)')


@pytest.fixture(scope='module')
def driver(server):
    _require_browser()
    driver = start_browser(900, 700)
    yield driver
    driver.quit()


def _page_mask(driver, i: int) -> np.ndarray:
    runs = driver.execute_script('return window.rapSam.maskRuns(arguments[0])',
                                 i)
    values = np.arange(len(runs['counts'])) % 2
    flat = np.repeat(values, runs['counts']).astype(bool)
    return flat.reshape(runs['height'], runs['width']), runs['iou']


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def _message(driver) -> str:
    box = driver.find_element(By.ID, 'message')
    return box.text if box.is_displayed() else ''


def _mouse_on_image(driver, x: float, y: float):
    """ActionChains at image pixel (x, y) of the shown canvas."""
    canvas = driver.find_element(By.ID, 'mask-canvas')
    width = driver.execute_script('return arguments[0].width', canvas)
    rect = canvas.rect
    scale = rect['width'] / width
    return ActionChains(driver).move_to_element_with_offset(
        canvas, round((x + 0.5) * scale - rect['width'] / 2),
        round((y + 0.5) * scale - rect['height'] / 2))


def test_click_and_box_in_the_browser_equal_predict_prompts(
        server, driver, predictor, small_photo):
    driver.get(server['url'])
    wait_web_idle(driver, what='the prompt decoder to load')
    assert _message(driver) == ''
    assert driver.execute_script('return window.crossOriginIsolated')
    open_in_web_demo(driver, small_photo)
    assert 'Click an object' in text_of(driver, 'status'), _message(driver)
    # A click, then a dragged box, with the mouse.
    _mouse_on_image(driver, 40, 30).click().perform()
    wait_until(lambda: page_data(driver, 'masks') == '1', what='a mask')
    _mouse_on_image(driver, 70, 20).click_and_hold().move_by_offset(
        60, 55).release().perform()
    wait_until(lambda: page_data(driver, 'masks') == '2', what='a box mask')
    prompts = driver.execute_script('return window.rapSam.prompts()')
    assert [p['kind'] for p in prompts] == ['click', 'box']
    click, box = prompts
    assert abs(click['x'] - 40) <= 1 and abs(click['y'] - 30) <= 1
    assert box['box'][2] - box['box'][0] >= 50
    predictor.set_image(small_photo)
    expected = predictor.predict_prompts(
        points=[[click['x'], click['y']]], boxes=[box['box']]).pred_instances
    masks = [_page_mask(driver, i) for i in range(2)]
    for i, (mask, iou) in enumerate(masks):
        ref = expected.masks[i].numpy()
        assert mask.shape == ref.shape == (100, 150)
        assert _iou(mask, ref) >= 0.99, (i, _iou(mask, ref))
        assert iou == pytest.approx(float(expected.iou_scores[i]), abs=2e-3)
    assert any(0 < m.sum() < m.size for m, _ in masks)  # masks, not blanks
    # The decode time, measured in the page.
    shown = text_of(driver, 'decode-time')
    ms = float(
        driver.find_element(By.ID, 'decode-time').get_attribute('data-ms'))
    assert ms > 0 and shown.endswith('to upsample the mask)')
    assert float(shown.split(' ms')[0]) == pytest.approx(ms, abs=0.051)
    times = driver.execute_script('return window.rapSam.decodeTimes()')
    assert len(times) == 2 and all(t > 0 for t in times)
    # Undo and clear.
    driver.find_element(By.ID, 'undo-button').click()
    assert page_data(driver, 'masks') == '1'
    assert len(driver.find_elements(By.CSS_SELECTOR, '#mask-list li')) == 1
    driver.find_element(By.ID, 'clear-button').click()
    assert page_data(driver, 'masks') == '0'
    assert not driver.find_element(By.ID, 'clear-button').is_enabled()
    # An image dropped on the page opens as one opened with the button.
    with open(small_photo, 'rb') as f:
        data = list(f.read())
    driver.execute_script(
        'const t = new DataTransfer();'
        't.items.add(new File([new Uint8Array(arguments[0])], "dropped.png",'
        ' {type: "image/png"}));'
        'document.getElementById("stage").dispatchEvent(new DragEvent('
        '"drop", {dataTransfer: t, bubbles: true, cancelable: true}));', data)
    wait_until(
        lambda: page_data(driver, 'image') == 'dropped.png',
        what='the dropped image')
    wait_web_idle(driver)
    assert text_of(driver, 'status').startswith('dropped.png: 150 x 100')


def _works_again(driver, path: str, x: int = 20, y: int = 20) -> None:
    """An image opens and a click gets a mask: the page still works."""
    open_in_web_demo(driver, path)
    assert 'Click an object' in text_of(driver, 'status'), _message(driver)
    result = add_web_prompt(driver, dict(kind='click', x=x, y=y))
    assert result is not None and result['decodeMs'] > 0, _message(driver)
    assert _message(driver) == ''


def test_bad_inputs_are_messages_and_the_page_keeps_working(
        server, driver, small_photo):
    root = server['root']
    driver.get(server['url'])
    wait_web_idle(driver)
    notes = root / 'notes.png'
    notes.write_bytes(b'just some notes\n')
    huge = root / 'huge.png'
    huge.write_bytes(_png_header(10000, 10000))
    for path, message in [(notes, 'Cannot read the uploaded data as an '
                           'image'),
                          (huge, '100.0 megapixels), above the limit')]:
        open_in_web_demo(driver, str(path))
        assert message in _message(driver)
        _works_again(driver, small_photo)

    # The decoder file missing: a message at start, at each click, and
    # clicks work again once it is back.
    decoder = osp.join(server['export'], 'prompt_decoder.onnx')
    shutil.move(decoder, decoder + '.away')
    try:
        driver.get(server['url'])
        wait_web_idle(driver)
        assert 'Cannot load the prompt decoder: The prompt decoder is ' \
               'missing' in _message(driver)
        open_in_web_demo(driver, small_photo)
        assert add_web_prompt(driver, dict(kind='click', x=5, y=5)) is None
        assert 'Cannot load the prompt decoder' in _message(driver)
    finally:
        shutil.move(decoder + '.away', decoder)
    assert add_web_prompt(driver, dict(kind='click', x=5, y=5)) is not None
    assert page_data(driver, 'masks') == '1' and _message(driver) == ''

    # The server down, then back (on the same port, from its export).
    server['proc'].kill()
    server['proc'].wait()
    open_in_web_demo(driver, small_photo)
    assert 'Cannot reach the server' in _message(driver)
    assert page_data(driver, 'masks') == '1'  # the image and its mask stay
    server['proc'], _ = serve_web_demo(
        ['--export', server['export'], '--port',
         str(server['port'])], server['log'] + '.2', server['env'])
    _works_again(driver, small_photo)
    for log in (server['log'], server['log'] + '.2'):
        with open(log) as f:
            assert 'Traceback' not in f.read()


def test_click_benchmark(server, tmp_path):
    """tools/analysis/browser_click_benchmark.py as the README runs it, on
    the server fixture's export."""
    _require_browser()
    shot = tmp_path / 'web_demo.png'
    stdout = assert_ran(
        run_script(
            BENCHMARK,
            '--export',
            server['export'],
            '--clicks',
            3,
            '--warmup',
            1,
            '--screenshot',
            shot,
            env=server['cache']))
    # The export's scale, demo.jpg (600 x 400), one thread.
    row = next(line.split() for line in stdout.splitlines()
               if line.strip().startswith('96x64'))
    assert row[1:3] == ['600x400', '1'], stdout
    median, p90 = (float(v) for v in row[3:5])
    assert 0 < median <= p90
    with open(shot, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_click_benchmark_says_why_the_server_did_not_start(tmp_path):
    """A server that cannot start (here: no such export folder) ends the
    benchmark with the server's one-line error, status 2."""
    _require_browser()
    result = run_script(
        BENCHMARK, '--export', tmp_path / 'missing', timeout=300)
    assert_user_error(result, 'missing')


@pytest.mark.parametrize('ori_shape', [(100, 150), (101, 149), (40, 200)])
def test_page_post_processing_is_the_models(ori_shape):
    """demo/web/postprocess.js (run by node) against RapSAM.add_prompt_preds
    on the same logits: the same mask pixels."""
    import subprocess

    import torch
    from mmdet.structures import DetDataSample

    from rap_sam.deploy.backends import ImagePreprocessor
    from rap_sam.deploy.backends.post_processor import RapSAMPostProcessor
    node = shutil.which('node')
    if node is None:
        pytest.skip('node not installed')
    h, w = ori_shape
    _, meta = ImagePreprocessor(
        SCALE, [0] * 3, [1] * 3, size_divisor=32)(
            np.zeros((h, w, 3), np.uint8))
    pad_h, pad_w = meta['batch_input_shape']
    logits = torch.from_numpy(
        np.random.default_rng(h).normal(
            0, 2, (1, 2, pad_h // 4, pad_w // 4)).astype(np.float32))
    sample = DetDataSample(metainfo=meta)
    expected = RapSAMPostProcessor(1, 0).prompts(
        torch.zeros(1, 2, 2), logits, torch.zeros(1, 2, 1),
        [sample])[0].pred_instances.masks.numpy()
    script = ('import("./demo/web/postprocess.js").then((m) => {'
              'const [logits, h4, w4, meta] = JSON.parse(process.argv[1]);'
              'const out = logits.map((l) => Array.from(m.promptMask('
              'Float32Array.from(l), h4, w4, meta)));'
              'console.log(JSON.stringify(out)); });')
    arg = json.dumps([
        logits[0].flatten(1).tolist(), pad_h // 4, pad_w // 4, {
            k: list(meta[k])
            for k in ('batch_input_shape', 'img_shape', 'ori_shape')
        }
    ])
    result = subprocess.run([node, '-e', script, arg],
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    got = np.array(json.loads(result.stdout), bool).reshape(expected.shape)
    assert 0 < expected.sum() < expected.size
    assert (got != expected).sum() == 0


@pytest.mark.parametrize('args, message', [
    (['--export', 'no/such/folder'], 'Export folder not found: no/such'),
    (['--export', '{export}', '--port', '{port}'], 'Cannot listen on '
     '127.0.0.1:{port}'),
])
def test_bad_options_are_one_line_errors(server, args, message):
    args = [a.format(**server) for a in args]
    result = run_script(
        'demo/web_server.py', *args, env=server['cache'], timeout=300)
    assert_user_error(result, f'error: {message.format(**server)}')


def test_a_bf16_export_names_what_the_server_runs(fp32_export, tmp_path):
    """The runtime's refusal advised openvino, which the server has no
    option to choose: the line names what it does run."""
    from rap_sam.deploy.quantize import quantize_export
    folder = quantize_export(
        str(fp32_export), 'bf16', out_dir=str(tmp_path / 'bf16'))
    line = assert_user_error(
        run_script('demo/web_server.py', '--export', folder, '--port', 0),
        f'error: {folder} is exported in bf16 (its deploy.json); the web '
        'demo encodes on ONNX Runtime, which runs fp32 and int8 folders: '
        'give one of those to --export')
    assert 'openvino' not in line.lower()


@pytest.mark.parametrize(
    'args, message',
    [
        ('--scale 64 64', '--export runs an export folder as it is: leave out '
         '--scale'),
        # Ignored: the export's classes were served.
        ('--config configs/rap_sam/eval_rap_sam_yt19.py', 'give --config '
         '(configs/rap_sam/eval_rap_sam_yt19.py) or --export DIR (DIR), not '
         'both'),
        ('--num-things 3 --trust-checkpoint', 'leave out --num-things and '
         '--trust-checkpoint'),
        ('--device cuda', '--export runs on the CPU (onnxruntime): leave out '
         '--device cuda'),
    ])
def test_options_an_export_fixes_are_refused(args, message, tmp_path):
    folder = str(tmp_path / 'none')  # checked before it is read
    assert_usage_error(
        run_script('demo/web_server.py', '--export', folder, *args.split()),
        message.replace('(DIR)', f'({folder})'))


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_quietly(server, tmp_path, sig):
    """SIGTERM (a supervisor's stop, `docker stop`) and Ctrl+C are how a
    server is stopped: status 0, no traceback, no error line."""
    log = str(tmp_path / 'server.log')
    proc, _ = serve_web_demo(
        ['--export', server['export'], '--port',
         str(_free_port())], log, server['env'])
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0
    with open(log) as f:
        text = f.read()
    assert 'Traceback' not in text and 'error:' not in text


@pytest.mark.parametrize('value, message', [
    ('100000000000000000000', "at most 86400 seconds (a day), got "
     "'100000000000000000000'"),
    ('0', "expected a whole number >= 1, got '0'"),
])
def test_a_timeout_out_of_range_is_a_usage_error(value, message, tmp_path):
    """A timeout past what a socket takes served, then raised an
    OverflowError traceback on every connection (the page never loaded)."""
    assert_usage_error(
        run_script(
            'demo/web_server.py',
            '--export',
            tmp_path / 'none',
            '--timeout',
            value,
            timeout=120), f'argument --timeout: {message}')
