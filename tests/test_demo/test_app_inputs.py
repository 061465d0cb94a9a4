"""The web app as a user starts it (``python demo/app.py ...``): the
command-line mistakes it refuses before serving, and the served app's
answers to bad uploads over HTTP (gradio_client), with nothing but its
messages reaching the page and no traceback in the server's log."""
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np
import pytest
from helpers import (assert_usage_error, assert_user_error, run_script,
                     start_in_terminal)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_a_port_out_of_range_is_a_usage_error():
    assert_usage_error(
        run_script('demo/app.py', '--port', '70000', timeout=120),
        '--port must be 1 to 65535, got 70000')


def test_a_taken_port_or_a_foreign_host_is_said_with_its_reason(weights):
    """It read "Cannot find empty port in range: P-P", for a host that is
    not this machine's too (after uvicorn's own log line)."""
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Were the port not checked this run would serve: the timeout
        # would fail the test.
        result = run_script(
            'demo/app.py',
            '--weights',
            weights,
            '--device',
            'cpu',
            '--port',
            port,
            timeout=120)
    assert_user_error(
        result, f'Cannot serve on 127.0.0.1:{port} (Address already in '
        'use): choose another --port or --host.')
    port = _free_port()
    assert_user_error(
        run_script(
            'demo/app.py',
            '--weights',
            weights,
            '--device',
            'cpu',
            '--host',
            '192.0.2.1',  # TEST-NET-1: no machine's address
            '--port',
            port,
            timeout=120),
        f'Cannot serve on 192.0.2.1:{port} (Cannot assign requested '
        'address)')


def test_a_missing_video_config_is_said_at_start():
    """It was read on the first video: the app served, and its video tab
    only failed."""
    assert_user_error(
        run_script(
            'demo/app.py',
            '--device',
            'cpu',
            '--video-config',
            'configs/rap_sam/no_such.py',
            '--port',
            _free_port(),
            timeout=120), 'Config file not found: configs/rap_sam/no_such.py')


def _write_video(path: str, photo: str, frames: int) -> None:
    img = cv2.imread(photo)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 64))
    for t in range(frames):
        writer.write(np.ascontiguousarray(img[18:82, t % 50:t % 50 + 96]))
    writer.release()


def _seeded(weights) -> list:
    return ['--weights', weights, '--device', 'cpu', '--scale', 96, 64]


@contextlib.contextmanager
def served_app(args, stop=signal.SIGINT):
    """``python demo/app.py ARGS`` on a free port; yields its URL and a dict
    that receives its exit status, stdout and stderr once ``stop`` has
    stopped it: a Ctrl+C (SIGINT to the terminal's process group) or a
    ``kill PID`` (SIGTERM to the process)."""
    port = _free_port()
    proc = start_in_terminal('demo/app.py', *args, '--port', port)
    url = f'http://127.0.0.1:{port}/'
    ended = {}
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, 'the app did not start'
                time.sleep(1)
        yield url, ended
    finally:
        if proc.poll() is None:
            if stop == signal.SIGINT:
                os.killpg(proc.pid, stop)
            else:
                proc.send_signal(stop)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        ended.update(status=proc.returncode, out=out, err=err)


def test_the_served_app_answers_bad_uploads_with_messages(
        weights, small_photo, small_video, tmp_path, monkeypatch):
    """Over HTTP, as the page sends them: the page gets each refusal's
    message (naming the file as the user named it), the app stays up, and
    its log holds no traceback. Stopped, it leaves nothing in gradio's
    cache (it kept every upload and result before), and the video it made
    is still in the folder it named at start."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    cache = tmp_path / 'gradio_cache'
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(cache))
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setenv('TMPDIR', str(tmp_path / 'tmp'))  # the app's folder
    (tmp_path / 'notes.png').write_text('not a picture')
    (tmp_path / 'clip.mp4').write_bytes(b'\x00' * 100)
    with served_app(_seeded(weights)) as (url, ended):
        client = Client(url, verbose=False)
        for api in ('/load_image', '/panoptic'):
            with pytest.raises(AppError) as err:
                client.predict(
                    handle_file(str(tmp_path / 'notes.png')), api_name=api)
            assert str(
                err.value).startswith('Cannot read notes.png as an image')
        for api, args in (('/load_video', ()), ('/on_track', (0.5, ))):
            with pytest.raises(AppError) as err:
                client.predict(
                    handle_file(str(tmp_path / 'clip.mp4')),
                    *args,
                    api_name=api)
            assert str(err.value).startswith('Cannot open clip.mp4 as a video')
        # Still up, and good input is served.
        _, note = client.predict(
            handle_file(small_photo), api_name='/load_image')
        assert note.startswith('Click on the image to add a point')
        *_, summary, _ = client.predict(
            handle_file(small_video), 0.5, api_name='/on_track')
        assert summary.startswith('**4 frames, ')
        assert any(files for _, _, files in os.walk(cache))
        # Stopped while a video is being tracked: gradio's clean-up of its
        # cache was cut short.
        long_video = str(tmp_path / 'long.mp4')
        _write_video(long_video, small_photo, 400)
        running = client.submit(
            handle_file(long_video), 0.5, api_name='/on_track')
        deadline = time.monotonic() + 120
        while running.status().code.name != 'ITERATING':
            assert time.monotonic() < deadline, running.status()
            time.sleep(0.5)
    assert 'Traceback' not in ended['err'], ended['err']
    kept = re.search(r'the videos it makes are kept in (\S+)$', ended['out'],
                     re.M)
    assert kept, ended['out']
    assert kept.group(1).startswith(str(tmp_path / 'tmp'))
    made = [name for _, _, names in os.walk(kept.group(1)) for name in names]
    assert {'pan.json', 'pan.mp4', 'pan.webm'} <= set(made)
    assert not [files for _, _, files in os.walk(cache) if files]


@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_app_quietly(weights, stop):
    """Ctrl+C and SIGTERM (a supervisor's stop, `docker stop`) are how the
    app is stopped: status 0, no traceback, no error line."""
    with served_app(_seeded(weights), stop) as (url, ended):
        urllib.request.urlopen(url, timeout=30).close()
    assert ended['status'] == 0, ended['err']
    assert 'Traceback' not in ended['err'] and 'error:' not in ended['err']


def test_a_stop_while_gradio_starts_serving_is_a_stop(tmp_path, monkeypatch,
                                                      capsys):
    """Gradio's page answers before its launch returns: a Ctrl+C then is
    the user's stop too (status 0, not "interrupted"), the server it began
    is closed, and the app's folder, never announced, is not left behind."""
    import tempfile

    import app
    closed = []

    def launch(self, *args, **kwargs):
        raise KeyboardInterrupt  # once uvicorn serves, before it returns

    monkeypatch.setattr(app, 'load_predictors', lambda args: (None, None))
    monkeypatch.setattr(app.gr.Blocks, 'launch', launch)
    monkeypatch.setattr(app.gr.Blocks, 'close',
                        lambda self: closed.append('page'))
    monkeypatch.setattr(app.RapSAMApp, 'close',
                        lambda self: closed.append('app'))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    app.main(['--device', 'cpu', '--port', str(_free_port())])
    assert closed == ['page', 'app']
    assert os.listdir(tmp_path) == []
    assert capsys.readouterr().err == ''
