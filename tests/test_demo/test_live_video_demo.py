"""demo/video_demo.py on live sources, run as a user runs it: a network
stream (served over HTTP on this machine) is segmented as it arrives,
with each frame's latency printed and a valid mp4 + json at the end; a
camera that is not there, or a missing source, is one ``error:`` line."""
import functools
import http.server
import json
import re
import threading

import cv2
import numpy as np
import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script)

DEMO = 'demo/video_demo.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'


@pytest.fixture
def stream_url(small_video, tmp_path):
    folder = tmp_path / 'www'
    folder.mkdir()
    (folder / 'pan.mp4').write_bytes(open(small_video, 'rb').read())
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}/pan.mp4'
    server.shutdown()


def test_stream_is_segmented_live(stream_url, weights, tmp_path):
    out = tmp_path / 'out'
    # The stream's credentials are sent, not written down.
    with_password = stream_url.replace('//', '//viewer:s3cret@')
    proc = run_script(DEMO, '--stream', with_password, YT19, '--weights',
                      weights, '--scale', '96', '64', '--chunk-frames', '2',
                      '--out-dir', str(out), '--score-thr', '0')
    assert_ran(proc)
    latencies = re.findall(r'frame (\d+): (\d+) ms from capture to result',
                           proc.stderr)
    assert [int(i) for i, _ in latencies] == [0, 1, 2, 3]
    assert f'\n{stream_url}: the stream ended after 4 frames' in proc.stdout
    text = (out / 'stream.json').read_text()
    assert 's3cret' not in text and 's3cret' not in proc.stdout
    info = json.loads(text)
    assert info['video'] == stream_url
    assert info['complete'] and info['num_frames'] == 4
    assert (info['width'], info['height']) == (96, 64)
    assert info['tracks'], 'score-thr 0 keeps every track'
    cap = cv2.VideoCapture(str(out / 'stream.mp4'))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 4 and frames[0].shape == (64, 96, 3)
    assert np.mean([f.std() for f in frames]) > 0


def test_missing_camera_is_reported_before_the_model_loads(tmp_path):
    proc = run_script(DEMO, '--camera', '7', YT19, '--out-dir',
                      str(tmp_path / 'o'))
    assert assert_user_error(proc) == (
        'error: Cannot open camera 7 (no such '
        'camera, or another program is using it).')
    assert not (tmp_path / 'o').exists()


def test_unreachable_stream_is_one_line(tmp_path):
    """Nothing from FFmpeg's own log (``[tcp @ ...] Failed to resolve
    hostname``) beside the error line, which names the stream without its
    credentials."""
    proc = run_script(DEMO, '--stream',
                      'rtsp://viewer:s3cret@no-such-host.invalid/live', YT19,
                      '--out-dir', str(tmp_path / 'o'))
    assert assert_user_error(proc) == (
        'error: Cannot open the stream rtsp://no-such-host.invalid/live '
        '(unreachable, not a video stream, or a protocol OpenCV cannot '
        'read).')
    assert 's3cret' not in proc.stdout + proc.stderr
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('args',
                         [[YT19], ['pan.mp4', '--camera', '0', YT19],
                          ['--camera', '0', '--stream', 'x://y', YT19]])
def test_exactly_one_source(args):
    line = assert_usage_error(run_script(DEMO, *args))
    assert 'one of them' in line or 'not allowed with' in line


def test_show_needs_a_display(tmp_path):
    proc = run_script(
        DEMO,
        '--stream',
        'http://127.0.0.1:9/none.mp4',
        YT19,
        '--show',
        env=dict(DISPLAY=None, WAYLAND_DISPLAY=None))
    assert assert_user_error(proc).startswith('error: --show needs a display')


def test_a_stopped_live_run_says_where_its_frames_are(monkeypatch, capsys,
                                                      tmp_path):
    """Ctrl+C is how a live run ends (status 0): it said nothing of the
    files it had written."""
    import video_demo
    monkeypatch.setattr(video_demo, 'iter_frames',
                        lambda source: iter([np.zeros((8, 8, 3), np.uint8)]))
    monkeypatch.setattr(video_demo, 'load_predictor', lambda *a, **k: None)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt('the 62 frames segmented before it are in '
                                'out/stream.mp4 and out/stream.json')

    monkeypatch.setattr(video_demo, 'track_video_to_files', stopped)
    args = video_demo.parse_args([
        '--stream', 'http://cam/live', YT19, '--out-dir',
        str(tmp_path / 'out')
    ])
    video_demo._live_main(args, args.stream)
    assert capsys.readouterr().out == (
        'http://cam/live: stopped; the 62 frames segmented before it are in '
        'out/stream.mp4 and out/stream.json.\n')


def test_a_camera_run_names_its_camera(monkeypatch, weights, tmp_path):
    """The json says which camera (it said ``"video": null``)."""
    import video_demo
    frames = [np.full((48, 64, 3), 40 * t, np.uint8) for t in range(3)]
    monkeypatch.setattr(video_demo, 'iter_frames', lambda source: iter(frames))
    args = video_demo.parse_args([
        '--camera', '2', YT19, '--weights', weights, '--scale', '64', '48',
        '--out-dir',
        str(tmp_path / 'out')
    ])
    video_demo._live_main(args, args.camera)
    info = json.loads((tmp_path / 'out' / 'camera2.json').read_text())
    assert info['video'] == 'camera 2' and info['num_frames'] == 3
