"""The web app's endpoints called as an API client may call them (gradio_client
or raw HTTP, by api_name): a value the page never sends, a click without its
event data, a prompt before any upload, a session or an upload that is gone.
Each is answered with a one-line message naming the problem and what to do,
and the server logs no traceback for it (gradio logs one for any exception but
a gr.Error raised with print_exception=False)."""
import json
import math
import os
import shutil
import socket
import types
import uuid

import gradio as gr
import numpy as np
import pytest


@pytest.fixture
def app(tmp_path):
    """The app with stand-ins for the models: every call below is refused
    before a model runs, or reads frames only."""
    from app import RapSAMApp
    image_model = types.SimpleNamespace(
        set_image=lambda image: None, class_names=[])
    app = RapSAMApp(image_model,
                    lambda: types.SimpleNamespace(max_pixels=None),
                    str(tmp_path / 'out'))
    yield app
    app.close()


def _refused(call, *args) -> str:
    """The message of ``call(*args)``'s refusal, checked to be one that
    gradio says without a traceback."""
    with pytest.raises(gr.Error) as err:
        call(*args)
    assert err.value.print_exception is False
    assert '\n' not in err.value.message
    return err.value.message


FRAME = 'The frame is a whole number, 0 or more (0 is the first), got '


@pytest.mark.parametrize('value, shown', [(-1, '-1'), (2.5, '2.5'),
                                          ('two', "'two'"), (None, 'None'),
                                          (math.inf, 'inf'), ([2], '[2]')])
def test_a_frame_that_is_no_frame_index(value, shown):
    from app import FrameSlider
    picker = FrameSlider(0, 1, step=1)
    assert _refused(picker.preprocess, value) == f'{FRAME}{shown}.'
    # gradio's slider refused a frame above the maximum it was last set to
    # (another video's length, maybe): the handler says the video's own.
    assert picker.preprocess(7) == 7 and picker.preprocess(2.0) == 2


@pytest.mark.parametrize('value', [7, -0.1, 'x', None, True, math.nan, [0]])
def test_a_score_threshold_out_of_range(value):
    from app import CheckedSlider
    thr = CheckedSlider(0, 1, value=0.5, label='Show instances scoring at')
    assert _refused(thr.preprocess, value).startswith(
        '"Show instances scoring at" is a number from 0 to 1, got ')
    assert thr.preprocess(0.25) == 0.25 and thr.preprocess(1) == 1


@pytest.mark.parametrize('value', ['circle', None, 0, ['point']])
def test_a_click_mode_that_is_no_choice(value):
    from app import CheckedRadio
    mode = CheckedRadio(['point', 'box'], value='point', label='A click adds')
    assert _refused(
        mode.preprocess,
        value) == (f'"A click adds" is \'point\' or \'box\', got {value!r}.')
    assert mode.preprocess('box') == 'box'


@pytest.mark.parametrize(
    'data', [None, {}, {
        'index': None
    }, {
        'index': 5
    }, {
        'index': [3]
    }, 'x'])
def test_a_click_without_its_position(data):
    """gradio_client sends no event data at all: gradio's SelectData failed
    with a TypeError (a traceback)."""
    from app import ClickData
    assert _refused(ClickData, None, data) == (
        'A click comes with its position in the image, event data '
        f'{{"index": [x, y]}}, got {data!r}: click on the image in the '
        'page.')
    click = ClickData(None, {'index': [3, 4]})  # as raw HTTP may send it
    assert click.index == [3, 4] and click.value is None


@pytest.mark.parametrize('x, y, message', [
    ('a', 1, r"Points \(x, y\) must be numbers, got \[\['a', 1\]\]\."),
    (True, 1, r'Points \(x, y\) must be numbers, got booleans'),
    ([1, 2], 3, r'Points \(x, y\) must be numbers in rows'),
    (None, 3, r'Points \(x, y\) must be numbers'),
    (150.5, 3, r'The point \(150\.5, 3\) is outside the image, which is '
     r'150 x 100 pixels\.'),
])
def test_click_coordinates_that_are_no_position(app, x, y, message):
    """Event data sent by raw HTTP, with an index its client made up."""
    image = np.zeros((100, 150, 3), np.uint8)
    for mode in ('point', 'box'):
        with pytest.raises(gr.Error, match=message):
            app.click(image, app.new_prompts(), mode, x, y)
        with pytest.raises(gr.Error, match=message):
            app.click_frame(
                app.new_clicks('clip.mp4', 0, (150, 100), 4), mode, x, y)


def test_prompts_before_any_upload(app, small_video):
    """A new session's state (a client's first call, or one made before a
    restart: gradio keeps sessions in memory only)."""
    assert _refused(app.click, None, app.new_prompts(), 'point', 1,
                    1) == 'Upload an image first.'
    assert _refused(app.panoptic, None) == 'Upload an image first.'
    assert _refused(app.click_frame, app.new_clicks(), 'point', 1,
                    1) == 'Upload a video first.'
    assert _refused(app.show_frame, None, 0,
                    app.new_clicks()) == 'Upload a video first.'
    assert _refused(app.track, None, 0.5) == 'Upload a video first.'
    _, _, _, state = app.load_video(small_video)
    assert _refused(
        app.track_clicks, small_video,
        state) == ('Click on the frame to choose the objects to track first.')
    # Nothing to refuse: the page's own "clear" and "empty upload" calls.
    assert app.clear(None, app.new_prompts())[1] == 'Upload an image.'
    assert app.clear_clicks(
        app.new_clicks())[1] == ('Upload a video to click on its objects.')
    assert app.load_image(None)[1] == 'Upload an image.'
    assert app.load_video(None)[2] == (
        'Upload a video to click on its objects.')


def test_an_upload_gone_from_the_server(app, small_video, small_photo,
                                        tmp_path):
    """gradio deletes its copies of uploads when the app stops and after
    CACHE_SECONDS: a page open since then still names them ("Video not
    found: pan.mp4" said neither why nor what to do)."""
    from app import CheckedImage
    from gradio.data_classes import ImageData
    video = str(tmp_path / 'pan.mp4')
    shutil.copy(small_video, video)
    _, _, _, state = app.load_video(video)
    _, _, state = app.click_frame(state, 'point', 40, 30)
    os.remove(video)
    app._frames.clear()  # the frames kept for drawing clicks let go
    app.close()
    gone = ('pan.mp4 is no longer on the server (uploads are deleted when '
            'the app stops and after 24 hours): upload it again.')
    assert _refused(app.click_frame, state, 'point', 10, 10) == gone
    assert _refused(app.show_frame, video, 1, state) == gone
    assert _refused(app.load_video, video) == gone
    photo = tmp_path / 'gradio-copy' / 'image.png'
    photo.parent.mkdir()
    payload = ImageData(path=str(photo), orig_name='coffee.png')
    assert _refused(CheckedImage(type='numpy').preprocess,
                    payload) == gone.replace('pan.mp4', 'coffee.png')


def test_a_page_open_since_the_server_lost_its_session(app, small_video,
                                                       tmp_path):
    """A restarted server (or an expired session) has the page's clicks
    state as new, while the page still shows its video: its clicks said
    "Upload a video first." The page's video says what happened."""
    video = str(tmp_path / 'pan.mp4')
    shutil.copy(small_video, video)
    lost = ('The server has not loaded pan.mp4 for this page (it was '
            "restarted, or the page's session expired; an API client calls "
            '/load_video first): upload the video again.')
    assert _refused(app.click_frame, app.new_clicks(), 'point', 10, 10,
                    video) == lost
    assert _refused(app.track_clicks, video, app.new_clicks()) == lost
    # "Clear clicks" too (it blanked the canvas: "Upload a video to click on
    # its objects.", beside the video the page shows).
    assert _refused(app.clear_clicks, app.new_clicks(), video) == lost
    # Its upload deleted too (gradio's cache, emptied when the app stops).
    os.remove(video)
    gone = ('pan.mp4 is no longer on the server (uploads are deleted when '
            'the app stops and after 24 hours): upload it again.')
    assert _refused(app.click_frame, app.new_clicks(), 'point', 10, 10,
                    video) == gone
    assert _refused(app.track_clicks, video, app.new_clicks()) == gone
    assert _refused(app.clear_clicks, app.new_clicks(), video) == gone
    # No video on the page: as before.
    assert _refused(app.click_frame, app.new_clicks(), 'point', 10, 10,
                    None) == 'Upload a video first.'
    shown, note, _ = app.clear_clicks(app.new_clicks(), None)
    assert shown is None and note == 'Upload a video to click on its objects.'


def _endpoint(ui, name):
    (fn, ) = [fn for fn in ui.fns.values() if fn.api_name == name]
    return fn


@pytest.mark.parametrize(
    'name, value, label',
    [
        ('load_video', 'pan.mp4', 'Video'),
        ('load_video', {}, 'Video'),
        ('load_video', {
            'path': 'pan.mp4'
        }, 'Video'),  # no meta
        ('load_image', 'photo.png', 'Image'),
        ('panoptic', 12, 'Image'),
    ])
def test_a_file_input_sent_as_no_file(app, name, value, label):
    """A path sent without gradio_client's handle_file: pydantic's many
    lines, and a traceback in the log."""
    from app import _check_inputs, build_ui
    fn = _endpoint(build_ui(app), name)
    assert _refused(_check_inputs, fn, [
        value
    ]) == (f'{label} is a file, sent as gradio_client.handle_file(path), got '
           f'{value!r}.')
    _check_inputs(fn, [None])  # an empty upload is the handler's


def test_too_few_values(app):
    """A session state's value (None) is counted: a request holds one."""
    from app import _check_inputs, build_ui
    ui = build_ui(app)
    assert _refused(_check_inputs, _endpoint(ui, 'show_frame'), []) == (
        '/show_frame takes 3 values (Video, Frame to click on (0 is the '
        "first), None for the page's state), got 0.")
    on_select = _endpoint(ui, 'on_select')
    said = _refused(_check_inputs, on_select, [None])
    assert said == ("/on_select takes 3 values (Image, None for the page's "
                    'state, A click adds a), got 1.')
    _check_inputs(on_select, [None, None, 'point'])


def test_a_long_value_is_cut_short():
    from app import _shown
    assert _shown('x' * 500) == repr('x' * 500)[:57] + '...'
    assert _shown('two\nlines') == "'two\\nlines'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _queue_call(ui, port, api, data, event_data=None, session=None):
    """``api`` called as the page calls it (gradio_client sends no event
    data): joins the queue with ``data`` (a value for every input, None for
    a state) and ``event_data``; returns the error said, None when none."""
    import httpx
    fn = _endpoint(ui, api.lstrip('/'))
    session = session or uuid.uuid4().hex
    root = f'http://127.0.0.1:{port}/gradio_api'
    httpx.post(
        f'{root}/queue/join',
        json=dict(
            data=data,
            event_data=event_data,
            fn_index=fn._id,
            session_hash=session)).raise_for_status()
    with httpx.stream(
            'GET',
            f'{root}/queue/data',
            params=dict(session_hash=session),
            timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith('data:'):
                message = json.loads(line[5:])
                if message.get('msg') == 'process_completed':
                    output = message['output']
                    return None if message['success'] else output['error']
    raise AssertionError(f'{api} did not complete')


def _upload(port, path) -> dict:
    """``path`` uploaded as the page uploads it: its file payload."""
    import httpx
    with open(path, 'rb') as f:
        response = httpx.post(
            f'http://127.0.0.1:{port}/gradio_api/upload',
            files=[('files', (os.path.basename(path), f))])
    response.raise_for_status()
    (server_path, ) = response.json()
    return dict(
        path=server_path,
        orig_name=os.path.basename(path),
        meta={'_type': 'gradio.FileData'})


def test_the_served_app_answers_malformed_calls_with_messages(
        app, small_video, small_photo, tmp_path, monkeypatch, capfd):
    """Over HTTP with gradio_client, by api_name: each call the page never
    makes gets its message, the log holds no traceback, and the calls the
    page makes are answered as before."""
    from app import _shown, launch
    from gradio import processing_utils
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    downloads = []

    async def download(url, *args, **kwargs):
        downloads.append(url)
        raise AssertionError(f'the server fetched {url}')

    monkeypatch.setattr(processing_utils, 'async_ssrf_protected_download',
                        download)
    port = _free_port()
    ui = launch(app, '127.0.0.1', port)
    try:
        client = Client(f'http://127.0.0.1:{port}/', verbose=False)
        video, photo = handle_file(small_video), handle_file(small_photo)
        shown, picker, note = client.predict(video, api_name='/load_video')
        assert picker['maximum'] == 3 and 'frame 0 of 4' in note
        _, note = client.predict(video, 2, api_name='/show_frame')
        assert 'frame 2 of 4' in note
        click = ('A click comes with its position in the image, event data '
                 '{"index": [x, y]}, got None: click on the image in the '
                 'page.')
        threshold = '"Show instances scoring at least" is a number from 0 to 1'
        calls = [
            ('/show_frame', (video, 9), "Frame 9 is past the video's last "
             'frame (it has 4 frames; 0 is the first).'),
            ('/show_frame', (video, 'two'), f"{FRAME}'two'."),
            ('/show_frame', (video, -1), f'{FRAME}-1.'),
            ('/show_frame', (video, 1.5), f'{FRAME}1.5.'),
            ('/show_frame', (video, 10**9), 'Frame 1000000000 is past the '
             "video's last frame (its file says it has 4 frames; 0 is the "
             'first).'),
            ('/show_frame', (None, 0), 'Upload a video first.'),
            ('/on_frame_click', (None, 'point'), click),
            ('/on_frame_click', (video, 'point'), click),
            ('/on_frame_click', (None, 'circle'),
             "\"A click adds a\" is 'point' or 'box', got 'circle'."),
            ('/on_select', (photo, 'point'), click),
            ('/on_select', (None, 'box'), click),
            ('/on_track', (video, 7), f'{threshold}, got 7.'),
            ('/on_track', (video, 'x'), f"{threshold}, got 'x'."),
            ('/on_track', (None, 0.5), 'Upload a video first.'),
            ('/on_track_clicks', (video, ), 'Click on the frame to choose '
             'the objects to track first.'),
            ('/load_video', ('pan.mp4', ), 'Video is a file, sent as '
             "gradio_client.handle_file(path), got 'pan.mp4'."),
            ('/load_image', ('coffee.png', ), 'Image is a file, sent as '
             "gradio_client.handle_file(path), got 'coffee.png'."),
            ('/panoptic', (None, ), 'Upload an image first.'),
        ]
        # A file sent as a URL: refused before gradio fetches it.
        fetched = ': the app takes uploaded files only and downloads ' \
            'nothing; download the file and upload it (gradio_client.' \
            'handle_file(path) with a path on your machine).'
        for url in ('http://127.0.0.1:1/pan.mp4',
                    'https://example.com/coffee.png'):
            calls += [
                ('/load_video', (handle_file(url), ),
                 f'Video is a URL, {url!r}{fetched}'),
                ('/show_frame', (handle_file(url), 0),
                 f'Video is a URL, {url!r}{fetched}'),
                ('/on_select', (handle_file(url), 'point'),
                 f'Image is a URL, {url!r}{fetched}'),
                ('/panoptic', (handle_file(url), ),
                 f'Image is a URL, {url!r}{fetched}'),
            ]
        for api, args, message in calls:
            with pytest.raises(AppError) as err:
                client.predict(*args, api_name=api)
            assert str(err.value) == message, api
        assert downloads == []
        # Event data naming a file the app was not sent (raw HTTP: gradio's
        # own check refused it with a traceback).
        outside = str(tmp_path / 'secret.png')
        shutil.copy(small_photo, outside)
        for data in ({
                'index': [1, 2],
                'value': {
                    'path': outside
                }
        }, {
                'path': '/etc/passwd'
        }):
            shown = _shown(data.get('value', data)['path'])
            assert _queue_call(
                ui, port, '/on_frame_click', [None, None, 'point'],
                data) == ('The event data names a file that was not uploaded '
                          f'to this app, {shown}: a click sends only its '
                          'position in the image, event data {"index": [x, '
                          'y]}; click on the image in the page.')
        # Still up, and the page's calls answered as before.
        _, note = client.predict(video, 3, api_name='/show_frame')
        assert 'frame 3 of 4' in note
    finally:
        ui.close()
    assert 'Traceback' not in capfd.readouterr().err


def test_a_raw_call_without_its_states_values(app, small_video, small_photo,
                                              tmp_path, monkeypatch, capfd):
    """A raw /queue/join call that leaves out the None of a session state
    is told the count the request must hold, the None in its place, and the
    count it sent (it was told the count without the states: the count it
    had sent, refused); sent so, the call is answered."""
    from app import launch
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    session, click = uuid.uuid4().hex, {'index': [40, 30], 'value': None}
    state = "None for the page's state"
    port = _free_port()
    ui = launch(app, '127.0.0.1', port)
    try:
        video, photo = _upload(port, small_video), _upload(port, small_photo)
        for api, data, event, message in [
            ('/on_frame_click', [video, 'point'], click,
             f'takes 3 values (Video, {state}, A click adds a), got 2.'),
            ('/show_frame', [video, 1], None, 'takes 3 values (Video, Frame '
             f'to click on (0 is the first), {state}), got 2.'),
            ('/on_track_clicks', [video], None,
             f'takes 2 values (Video, {state}), got 1.'),
            ('/clear_clicks', [], None,
             f'takes 2 values ({state}, Video), got 0.'),
            ('/on_select', [photo, 'point'], click,
             f'takes 3 values (Image, {state}, A click adds a), got 2.'),
            ('/clear', [photo], None, f'takes 2 values (Image, {state}), got '
             '1.'),
        ]:
            assert _queue_call(ui, port, api, data, event,
                               session) == f'{api} {message}'
        # The values it names: answered.
        assert _queue_call(ui, port, '/load_video', [video], None,
                           session) is None
        for api, data, event in [
            ('/show_frame', [video, 1, None], None),
            ('/on_frame_click', [video, None, 'point'], click),
            ('/clear_clicks', [None, video], None),
            ('/load_image', [photo], None),
            ('/clear', [photo, None], None),
        ]:
            assert _queue_call(ui, port, api, data, event, session) is None
    finally:
        ui.close()
    assert 'Traceback' not in capfd.readouterr().err


def test_a_page_open_since_a_restart_clicks_on_its_frame(
        app, small_video, tmp_path, monkeypatch, capfd):
    """A page loads a video; the server stops (its uploads deleted, its
    sessions gone) and starts again; the page, still showing the video,
    clicks on its frame: it is told why the server has no video for it
    and what to do (it was "Upload a video first."), with no traceback."""
    from app import RapSAMApp, launch
    from gradio.route_utils import delete_files_created_by_app
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))
    session, click = uuid.uuid4().hex, {'index': [40, 30], 'value': None}
    port = _free_port()
    ui = launch(app, '127.0.0.1', port)
    try:
        video = _upload(port, small_video)
        assert _queue_call(ui, port, '/load_video', [video], None,
                           session) is None
        assert _queue_call(ui, port, '/on_frame_click', [video, None, 'point'],
                           click, session) is None
    finally:
        ui.close()
        app.close()
        delete_files_created_by_app(ui, age=None)  # as demo/app.py stops
    assert not os.path.exists(video['path'])
    again = RapSAMApp(app.predictor, app._video_factory, app.out_dir)
    port = _free_port()
    ui = launch(again, '127.0.0.1', port)
    try:
        for api, data, event in [
            ('/on_frame_click', [video, None, 'point'], click),
            ('/on_track_clicks', [video, None], None),
            ('/show_frame', [video, 1, None], None),
            ('/clear_clicks', [None, video], None),
        ]:
            assert _queue_call(ui, port, api, data, event, session) == (
                'pan.mp4 is no longer on the server (uploads are deleted '
                'when the app stops and after 24 hours): upload it again.')
    finally:
        ui.close()
        again.close()
    assert 'Traceback' not in capfd.readouterr().err
