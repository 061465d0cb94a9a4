"""Cameras and network streams as video sources: a stream served over
HTTP on this machine reads as the same frames as its file, and sources
that cannot be opened get one clear message."""
import functools
import http.server
import re
import socket
import threading

import cv2
import numpy as np
import pytest

from rap_sam.apis import InputError
from rap_sam.apis.inputs import (MAX_PIXELS_ENV, is_stream_url, iter_frames,
                                 without_password)


@pytest.fixture(scope='module')
def served_clip(tmp_path_factory):
    """A 6-frame mp4 and the http:// URL a local server gives it."""
    folder = tmp_path_factory.mktemp('served')
    writer = cv2.VideoWriter(
        str(folder / 'clip.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 10,
        (64, 48))
    for t in range(6):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, 8 * t:8 * t + 16] = (40 * t, 255 - 40 * t, 128)
        writer.write(frame)
    writer.release()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield str(folder / 'clip.mp4'), f'http://127.0.0.1:{port}'
    server.shutdown()


def test_stream_url_gives_the_files_frames(served_clip):
    path, base = served_clip
    streamed = list(iter_frames(f'{base}/clip.mp4'))
    from_file = list(iter_frames(path))
    assert len(streamed) == len(from_file) == 6
    for a, b in zip(streamed, from_file):
        np.testing.assert_array_equal(a, b)


def test_stream_that_cannot_be_opened(served_clip):
    _, base = served_clip
    with pytest.raises(InputError, match=r'Cannot open the stream .*missing'):
        next(iter_frames(f'{base}/missing.mp4'))


@pytest.mark.parametrize('index,message',
                         [(7, 'Cannot open camera 7 .no such camera'),
                          (-1, 'camera index is 0 or more')])
def test_cameras_that_do_not_exist(index, message):
    with pytest.raises(InputError, match=message):
        next(iter_frames(index))


def test_bools_are_not_cameras():
    with pytest.raises(InputError, match='camera index, a stream URL'):
        next(iter_frames(True))


def test_what_counts_as_a_stream_url():
    assert is_stream_url('rtsp://cam.local/live')
    assert is_stream_url('http://127.0.0.1:8000/a.mp4')
    assert not is_stream_url('videos/a.mp4')
    assert not is_stream_url(0)


def _closed_port():
    """A local port nothing listens on: a connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize('scheme', ['http', 'rtsp'])
def test_a_stream_that_cannot_be_opened_is_named_without_its_password(
        served_clip, scheme):
    _, base = served_clip
    host = (
        base[len('http://'):]
        if scheme == 'http' else f'127.0.0.1:{_closed_port()}')
    with pytest.raises(InputError) as err:
        next(iter_frames(f'{scheme}://viewer:s3cret@{host}/missing.mp4'))
    assert str(err.value) == (
        f'Cannot open the stream {scheme}://{host}/missing.mp4 (unreachable, '
        'not a video stream, or a protocol OpenCV cannot read).')
    assert 's3cret' not in str(err.value)


def test_a_streams_other_messages_name_it_without_its_password(
        served_clip, monkeypatch):
    """Its frames are read (the server takes any credentials) and refused
    past the pixel limit: that message names the stream as well."""
    _, base = served_clip
    url = base.replace('//', '//viewer:s3cret@') + '/clip.mp4'
    monkeypatch.setenv(MAX_PIXELS_ENV, str(64 * 48 - 1))
    with pytest.raises(InputError) as err:
        next(iter_frames(url))
    assert str(
        err.value).startswith(f'The stream {base}/clip.mp4 is 64 x 48 pixels')
    assert 's3cret' not in str(err.value)


@pytest.mark.parametrize(
    'url,named',
    [
        ('rtsp://user:pass@cam.local:554/live?ch=1',
         'rtsp://cam.local:554/live?ch=1'),
        ('rtsp://admin@cam.local/live', 'rtsp://cam.local/live'),
        ('rtsp://u:p@ss@cam.local/live', 'rtsp://cam.local/live'),
        ('rtsp://u:p%40ss@[::1]:554/live', 'rtsp://[::1]:554/live'),
        ('rtsp://u:pw@[::1/live', 'rtsp://[::1/live'),  # urlsplit refuses it
        ('http://cam.local/a@b.mp4', 'http://cam.local/a@b.mp4'),
        ('http://127.0.0.1:8000/a.mp4', 'http://127.0.0.1:8000/a.mp4'),
    ])
def test_without_password(url, named):
    assert without_password(url) == named
    assert not re.search('pw|pass|p%40ss|p@ss', without_password(url))


@pytest.mark.parametrize(
    'url,named',
    [
        ('rtsp://cam.local/stream?user=admin&password=s3cret',
         'rtsp://cam.local/stream?user=***&password=***'),
        ('rtsp://cam.local/stream?username=admin&pwd=s3cret&channel=1',
         'rtsp://cam.local/stream?username=***&pwd=***&channel=1'),
        ('http://cam.local/video.mjpg?PassWord=s3cret&Resolution=640x480',
         'http://cam.local/video.mjpg?PassWord=***&Resolution=640x480'),
        ('http://cam.local/v?pass=s3cret&passwd=s3cret&TOKEN=s3cret',
         'http://cam.local/v?pass=***&passwd=***&TOKEN=***'),
        ('https://cam.local/v?auth=s3cret&Key=s3cret&apikey=s3cret',
         'https://cam.local/v?auth=***&Key=***&apikey=***'),
        ('https://cam.local/v?api_key=s3cret&access_token=s3cret&secret=s3',
         'https://cam.local/v?api_key=***&access_token=***&secret=***'),
        # Both forms at once; the rest of the URL as it was.
        ('rtsp://admin:s3cret@cam.local:554/live?token=s3cret&fps=5#main',
         'rtsp://cam.local:554/live?token=***&fps=5#main'),
        # A value with = or ; in it is hidden whole; an empty one is none.
        ('rtsp://cam.local/live?password=s3=c;ret&password=&ch=1',
         'rtsp://cam.local/live?password=***&password=&ch=1'),
        # A name percent-encoded.
        ('rtsp://cam.local/live?pass%77ord=s3cret',
         'rtsp://cam.local/live?pass%77ord=***'),
        # Names that only contain a secret one's: unchanged.
        ('rtsp://cam.local/live?keyframe=1&passes=2&monkey=3',
         'rtsp://cam.local/live?keyframe=1&passes=2&monkey=3'),
        # Cameras that take them in the path; a page in the fragment.
        ('rtsp://10.0.0.5:554/user=admin&password=s3cret&channel=1&stream=0'
         '.sdp?', 'rtsp://10.0.0.5:554/user=***&password=***&channel=1&'
         'stream=0.sdp?'),
        ('rtsp://cam.local/live/password=s3cret/main',
         'rtsp://cam.local/live/password=***'),
        ('http://cam.local/live#token=s3cret&x=1',
         'http://cam.local/live#token=***&x=1'),
        # A ? or / in a value: hidden to the next & (or the end).
        ('rtsp://cam.local/live?pwd=s3?c/ret&ch=1',
         'rtsp://cam.local/live?pwd=***&ch=1'),
        # No path at all; a = in the host is no parameter.
        ('rtsp://cam.local', 'rtsp://cam.local'),
        ('rtsp://a=b.local/x', 'rtsp://a=b.local/x'),
        # urlsplit refuses it.
        ('rtsp://u:pw@[::1/live?user=admin&pwd=s3cret',
         'rtsp://[::1/live?user=***&pwd=***'),
    ])
def test_without_password_hides_credential_parameters(url, named):
    assert without_password(url) == named


@pytest.mark.parametrize('scheme', ['http', 'rtsp'])
def test_a_stream_that_cannot_be_opened_is_named_without_its_token(
        served_clip, scheme):
    """A camera that takes its login as query parameters: the message keeps
    the other parameters and hides the credentials' values (the user's
    name too, as in user:password@)."""
    _, base = served_clip
    host = (
        base[len('http://'):]
        if scheme == 'http' else f'127.0.0.1:{_closed_port()}')
    query = 'user=admin&Password=s3cret&channel=1&api_key=k3y'
    with pytest.raises(InputError) as err:
        next(iter_frames(f'{scheme}://{host}/missing.mp4?{query}'))
    assert str(err.value) == (
        f'Cannot open the stream {scheme}://{host}/missing.mp4?user=***&'
        'Password=***&channel=1&api_key=*** (unreachable, not a video stream, '
        'or a protocol OpenCV cannot read).')
    assert 's3cret' not in str(err.value) and 'k3y' not in str(err.value)
