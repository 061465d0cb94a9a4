"""The web app: its handlers on good and bad input, and the prompt tab in
headless Chromium (upload an image, click, see the mask)."""
import contextlib
import json
import re
import socket
import urllib.request

import cv2
import gradio as gr
import numpy as np
import pycocotools.mask as mask_util
import pytest
from helpers import config_path

from rap_sam.apis import RapSAMPredictor, iter_frames


@pytest.fixture(scope='module')
def app(weights, tmp_path_factory):
    from app import RapSAMApp

    def predictor(name, scale):
        return RapSAMPredictor(
            config_path(f'rap_sam/{name}'), weights, 'cpu', scale)

    image_predictor = predictor('eval_rap_sam_coco.py', (96, 64))
    # Random weights are never 0.8 sure of a class.
    image_predictor.model.panoptic_fusion_head.test_cfg[
        'object_mask_thr'] = 0.5
    return RapSAMApp(image_predictor,
                     lambda: predictor('eval_rap_sam_yt19.py', (64, 48)),
                     str(tmp_path_factory.mktemp('app')))


@pytest.fixture(scope='module')
def rgb(small_photo):
    return cv2.imread(small_photo)[..., ::-1].copy()


def test_clicks_accumulate_and_clear(app, rgb):
    shown, note, state = app.load_image(rgb)
    assert 'Click on the image' in note
    shown, text, state = app.click(rgb, state, 'point', 40, 30)
    assert '**1 prompt**' in text and state['points'] == [[40, 30]]
    assert not np.array_equal(shown, rgb)  # the mask is drawn
    shown, text, state = app.click(rgb, state, 'point', 120, 80)
    assert '**2 prompts**' in text
    # A box takes two clicks: its corners, in any order.
    _, text, state = app.click(rgb, state, 'box', 140, 90)
    assert 'opposite corner' in text and len(state['boxes']) == 0
    _, text, state = app.click(rgb, state, 'box', 10, 20)
    assert state['boxes'] == [[10, 20, 140, 90]] and '**3 prompts**' in text
    shown, text, state = app.clear(rgb, state)
    assert state['points'] == [] and np.array_equal(shown, rgb)


def test_prompt_tab_recomputes_features_for_its_own_image(app, rgb):
    """Another session's image may have replaced the cached features."""
    _, _, state = app.load_image(rgb)
    _, _, other = app.load_image(rgb[:50, :60].copy())
    _, text, _ = app.click(rgb, state, 'point', 140, 90)
    assert '**1 prompt**' in text


def test_click_outside_the_image_is_a_message(app, rgb):
    _, _, state = app.load_image(rgb)
    with pytest.raises(gr.Error, match='outside the image'):
        app.click(rgb, state, 'point', 500, 10)


def test_missing_inputs_are_messages(app):
    with pytest.raises(gr.Error, match='Upload an image'):
        app.click(None, app.new_prompts(), 'point', 1, 1)
    with pytest.raises(gr.Error, match='Upload an image'):
        app.panoptic(None)
    with pytest.raises(gr.Error, match='Upload a video'):
        app.track(None, 0.5)
    assert app.load_image(None)[1] == 'Upload an image.'


def test_panoptic_tab(app, rgb):
    shown, table = app.panoptic(rgb)
    assert shown.shape == rgb.shape
    assert re.search(r'\*\*[1-9]\d* segments?\*\*', table)


def test_video_tab(app, small_video, tmp_path):
    webm, files, text = app.track(small_video, 0.0)
    assert '4 frames' in text
    for path in [webm] + files:
        cap = cv2.VideoCapture(path) if not path.endswith('json') else None
        if cap is not None:
            assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) in (4, 0)
            assert cap.read()[0]
            cap.release()
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'\x00' * 64)
    with pytest.raises(gr.Error, match='Cannot open .* as a video'):
        app.track(str(broken), 0.5)


def test_video_tab_shows_frames_as_they_come(app, small_video):
    updates = list(app.iter_track(small_video, 0.0))
    *running, final = updates
    assert running, 'frames are shown before the video is done'
    for video, files, status, frame in running:
        assert video is None and files is None
        assert status.endswith('frames done')
        assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
    webm, files, text, last = final
    assert webm.endswith('.webm') and '4 frames' in text
    np.testing.assert_array_equal(last, running[-1][3])


def _frames_rgb(video):
    return [f[..., ::-1] for f in iter_frames(video)]


def test_click_to_track(app, small_video):
    """Pick a frame, click a point and draw a box on it, track: the files
    are video_demo.py's, the masks track_prompt's."""
    shown, picker, note, state = app.load_video(small_video)
    frames = _frames_rgb(small_video)
    assert np.array_equal(shown, frames[0])
    assert picker.maximum == 3 and picker.value == 0
    assert 'frame 0 of 4' in note
    shown, note, state = app.show_frame(small_video, 2, state)
    assert state['frame'] == 2 and np.array_equal(shown, frames[2])
    shown, note, state = app.click_frame(state, 'point', 40, 30)
    assert '**1 object**' in note and state['points'] == [[40, 30]]
    assert not np.array_equal(shown, frames[2])  # the click is drawn
    _, note, state = app.click_frame(state, 'box', 50, 50)
    assert 'opposite corner' in note and state['boxes'] == []
    _, note, state = app.click_frame(state, 'box', 5, 5)
    assert state['boxes'] == [[5, 5, 50, 50]] and '**2 objects**' in note

    updates = list(app.iter_track_clicks(small_video, state))
    *running, (webm, files, text, last) = updates
    assert running and all(u[0] is None and u[3].shape == (64, 96, 3)
                           for u in running)
    assert webm.endswith('pan_clicked.webm')
    assert '**4 frames, 2 objects** clicked on frame 2' in text
    assert re.search(r'^\| 1 \| point \| .+ \| \d\.\d\d \|$', text, re.M)
    info = json.loads(open(files[1]).read())
    assert info['prompt_frame'] == 2 and info['complete']
    assert [p['type'] for p in info['prompts']] == ['point', 'box']
    expected = app.video_predictor().track_prompt(
        small_video, 2, points=[[40, 30]], boxes=[[5, 5, 50, 50]])
    for track in info['tracks']:
        assert [f['frame'] for f in track['frames']] == [0, 1, 2, 3]
        for record, result in zip(track['frames'], expected):
            rle = dict(
                record['segmentation'],
                counts=record['segmentation']['counts'].encode())
            want = result.pred_track_instances.masks[track['id'] - 1]
            assert np.array_equal(mask_util.decode(rle), want.numpy())
    cap = cv2.VideoCapture(files[0])
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 4

    shown, note, state = app.clear_clicks(state)
    assert state['points'] == [] and np.array_equal(shown, frames[2])


def test_click_to_track_bad_input(app, small_video, tmp_path):
    _, _, _, state = app.load_video(small_video)
    with pytest.raises(gr.Error, match='Upload a video'):
        app.track_clicks(None, state)
    with pytest.raises(gr.Error, match='Upload a video'):
        app.show_frame(None, 0, state)
    with pytest.raises(gr.Error, match='Upload a video'):
        app.click_frame(app.new_clicks(), 'point', 1, 1)
    with pytest.raises(gr.Error, match='Click on the frame'):
        app.track_clicks(small_video, state)
    with pytest.raises(
            gr.Error,
            match='Frame 9 is past the video.s last frame '
            r'\(it has 4 frames'):
        app.show_frame(small_video, 9, state)
    with pytest.raises(gr.Error, match='outside the image'):
        app.click_frame(state, 'point', 500, 10)
    # A frame number past the end reaches the tracker (a file's frame
    # count is the container's word): its message, and no files.
    late = dict(state, frame=7, points=[[10, 10]])
    with pytest.raises(gr.Error, match='Frame 7 is past'):
        app.track_clicks(small_video, late)
    empty = str(tmp_path / 'empty.mp4')  # a header, no frames
    cv2.VideoWriter(empty, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                    (96, 64)).release()
    with pytest.raises(gr.Error, match='Cannot open .*empty.mp4 as a video'):
        app.load_video(empty)
    (tmp_path / 'frames').mkdir()
    with pytest.raises(gr.Error, match='No images .* in the folder'):
        app.load_video(str(tmp_path / 'frames'))
    assert app.load_video(None)[3] == app.new_clicks()


def test_frame_picker_of_a_frame_folder(app, tmp_path, small_photo):
    """A folder's frames are counted; one frame leaves nothing to pick."""
    photo = cv2.imread(small_photo)
    for n in (1, 3):
        folder = tmp_path / str(n)
        folder.mkdir()
        for i in range(n):
            cv2.imwrite(str(folder / f'{i}.png'), photo)
        shown, picker, note, _ = app.load_video(str(folder))
        assert np.array_equal(shown, photo[..., ::-1])
        assert f'frame 0 of {n}' in note
        assert (picker.maximum, picker.interactive) == (max(n - 1, 1), n > 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _app_in_browser(app, width: int, height: int):
    """The app served on a free port, opened in headless Chromium; skips
    when chromium or its driver is missing."""
    from browser import chromium_paths, start_browser
    if chromium_paths() is None:
        pytest.skip('chromium / chromedriver not installed '
                    '(apt-get install chromium chromium-driver)')
    from app import launch
    port = _free_port()
    ui = launch(app, '127.0.0.1', port)
    driver = None
    try:
        driver = start_browser(width, height)
        driver.get(f'http://127.0.0.1:{port}')
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        ui.close()


def test_prompt_tab_in_a_browser(app, small_photo, rgb):
    from browser import click_image, shown_image, text_of, upload, wait_until
    with _app_in_browser(app, 1100, 800) as driver:
        upload(driver, 'prompt-input', small_photo)
        wait_until(
            lambda: 'Click on the image' in text_of(driver, 'prompt-status'),
            what='the image to load')
        before = shown_image(driver, 'prompt-canvas').get_attribute('src')
        click_image(driver, 'prompt-canvas', 40, 30)
        wait_until(
            lambda: '1 prompt' in text_of(driver, 'prompt-status'),
            what='the mask of the click')
        src = wait_until(
            lambda: (lambda s: s != before and s)
            (shown_image(driver, 'prompt-canvas').get_attribute('src')),
            what='the overlay')
        table = text_of(driver, 'prompt-status')
        pixels = re.search(r'^1 point .* (\d+)$', table, re.M)
        assert pixels and int(pixels.group(1)) > 0, table
        # The image the page shows has the mask drawn over the photo.
        data = urllib.request.urlopen(src, timeout=10).read()
        overlay = cv2.imdecode(
            np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert overlay.shape == rgb.shape
        assert (np.abs(overlay.astype(int) - rgb).sum(-1) > 30).mean() > 0.01


@pytest.fixture(scope='module')
def small_webm(small_video, tmp_path_factory):
    """small_video as VP8 webm: what Chromium plays (it plays no mp4v)."""
    path = str(tmp_path_factory.mktemp('webm') / 'pan.webm')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'VP80'), 5,
                             (96, 64))
    for frame in iter_frames(small_video):
        writer.write(frame)
    writer.release()
    return path


def test_click_to_track_in_a_browser(app, small_webm):
    """Upload a video, pick frame 2, click on it, track: the page shows
    the tracked frames and the result's video."""
    from browser import (click_image, open_tab_when_ready, pick_slider_value,
                         shown_image, text_of, upload, wait_until)
    from selenium.webdriver.common.by import By
    with _app_in_browser(app, 1100, 1000) as driver:
        open_tab_when_ready(driver, 'Video instances')
        upload(driver, 'video-input', small_webm)
        wait_until(
            lambda: 'frame 0 of 4' in text_of(driver, 'track-status'),
            what='the first frame to click on')
        pick_slider_value(driver, 'track-frame', 2)
        wait_until(
            lambda: 'frame 2 of' in text_of(driver, 'track-status'),
            what='frame 2')
        src = shown_image(driver, 'track-canvas').get_attribute('src')
        frame = cv2.imdecode(
            np.frombuffer(
                urllib.request.urlopen(src, timeout=10).read(), np.uint8),
            cv2.IMREAD_COLOR)
        assert np.array_equal(frame, list(iter_frames(small_webm))[2])
        click_image(driver, 'track-canvas', 40, 30)
        wait_until(
            lambda: '1 object' in text_of(driver, 'track-status'),
            what='the click')
        driver.find_element(By.ID, 'track-run').click()
        wait_until(
            lambda: '4 frames, 1 object clicked on frame 2' in text_of(
                driver, 'video-status'),
            timeout=120,
            what='the track')
        table = text_of(driver, 'video-status')
        assert re.search(r'^1 point .* \d\.\d\d$', table, re.M), table
        # The tracked frames were shown as they came, then the video.
        live = shown_image(driver, 'video-live').get_attribute('src')
        drawn = cv2.imdecode(
            np.frombuffer(
                urllib.request.urlopen(live, timeout=10).read(), np.uint8),
            cv2.IMREAD_COLOR)
        assert drawn.shape == (64, 96, 3)
        video = wait_until(lambda: driver.find_element(
            By.CSS_SELECTOR, '#video-output video').get_attribute('src'))
        assert 'pan_clicked.webm' in video


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels (header only, no data):
    what a decompression bomb looks like to a reader of headers."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IEND', b''))


@pytest.mark.parametrize('data, message', [
    (b'just some notes\n', r'Cannot read notes\.png as an image'),
    (b'', r'Cannot read notes\.png as an image'),
    (_png_header(20000, 20000), r'notes\.png .*megapixels.*downscale it'),
    (_png_header(10000, 10000), r'notes\.png is 10000 x 10000 pixels '
     r'\(100\.0 megapixels\), above the limit'),
])
def test_bad_uploads_show_their_message(tmp_path, data, message):
    """The page shows why an upload was refused (gradio's own decoder says
    only "Error"), naming the user's file, not gradio's copy of it."""
    from app import CheckedImage
    from gradio.data_classes import ImageData
    cached = tmp_path / 'gradio-cache-1234'
    cached.mkdir()
    (cached / 'notes.png').write_bytes(data)
    payload = ImageData(path=str(cached / 'notes.png'), orig_name='notes.png')
    with pytest.raises(gr.Error, match=message) as err:
        CheckedImage(type='numpy').preprocess(payload)
    assert 'gradio-cache-1234' not in err.value.message


@pytest.mark.parametrize('data, message', [
    (_png_header(20000, 20000), r'more than 179\.0 megapixels'),
    (_png_header(10000, 10000), r'10000 x 10000 pixels \(100\.0 megapixels'
     r'\), above the limit'),
    (b'hello', r'Cannot read the uploaded data as an image'),
])
def test_an_image_sent_inline_is_checked_as_an_upload(data, message):
    """An API client may send an image as a data: URL: gradio's decoder
    failed on it with a traceback, and decoded a 100-megapixel one."""
    import base64

    from app import CheckedImage
    from gradio.data_classes import ImageData
    url = 'data:image/png;base64,' + base64.b64encode(data).decode()
    with pytest.raises(gr.Error, match=message):
        CheckedImage(type='numpy').preprocess(ImageData(url=url))
    with pytest.raises(gr.Error, match='base64 data is damaged'):
        CheckedImage(type='numpy').preprocess(ImageData(url=url[:-3] + '!'))


def test_an_image_sent_inline_is_read(small_photo):
    import base64

    from app import CheckedImage
    from gradio.data_classes import ImageData
    with open(small_photo, 'rb') as f:
        url = 'data:image/png;base64,' + base64.b64encode(f.read()).decode()
    rgb = CheckedImage(type='numpy').preprocess(ImageData(url=url))
    assert np.array_equal(rgb, cv2.imread(small_photo)[..., ::-1])


def test_checked_upload_is_rgb(small_photo):
    from app import CheckedImage
    from gradio.data_classes import ImageData
    rgb = CheckedImage(type='numpy').preprocess(
        ImageData(path=small_photo, orig_name='coffee.png'))
    assert np.array_equal(rgb, cv2.imread(small_photo)[..., ::-1])


def test_upload_limit_and_queue_bound(app):
    """Uploads above --max-file-size are refused by the server with a
    message; the queue holds at most --max-queue requests."""
    import httpx
    from app import launch
    port = _free_port()
    ui = launch(app, '127.0.0.1', port, max_queue=3, max_file_size='2kb')
    try:
        url = f'http://127.0.0.1:{port}/gradio_api/upload'
        big = httpx.post(
            url, files={'files': ('big.png', b'x' * 5000)}, timeout=30)
        assert big.status_code == 413
        assert big.text == ('File size exceeded maximum allowed size of '
                            '2048 bytes.')
        small = httpx.post(
            url, files={'files': ('small.png', b'x' * 100)}, timeout=30)
        assert small.status_code == 200 and len(small.json()) == 1
        assert ui._queue.max_size == 3
    finally:
        ui.close()


def test_app_errors_are_user_errors(app, tmp_path, small_video):
    """Every UserError (not only InputError) reaches the page as its
    message: a video whose frames change size, an output folder that
    cannot be written."""
    from app import RapSAMApp
    frames = tmp_path / 'frames'
    frames.mkdir()
    cv2.imwrite(str(frames / '0.png'), np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(str(frames / '1.png'), np.zeros((30, 60, 3), np.uint8))
    # Frame 0 was done: its files are offered with the reason.
    webm, (mp4, json_path), text = app.track(str(frames), 0.5)
    assert text.startswith('**Stopped after 1 frame**: ')
    assert 'all frames of a video must have one size' in text
    info = json.loads(open(json_path).read())
    assert info['num_frames'] == 1 and info['complete'] is False
    cap = cv2.VideoCapture(mp4)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 1
    cap.release()
    (tmp_path / 'a_file').write_text('x')
    broken = RapSAMApp(app.predictor, app.video_predictor,
                       str(tmp_path / 'a_file'))
    with pytest.raises(
            gr.Error, match='Cannot write .*a_file/.*: Not a '
            'directory'):
        broken.track(small_video, 0.5)


# ----------------------------------------------------------------------
# what a user can get wrong, and two users at once
# ----------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['point', 'box'])
@pytest.mark.parametrize('x, y, message', [
    (-3, 3, r'The point \(-3, 3\) is outside the image, which is 150 x '
     '100 pixels'),
    (500, 10, r'The point \(500, 10\) is outside the image'),
    (float('nan'), 3, r'non-finite numbers \(NaN or infinity\)'),
    (2, float('inf'), r'non-finite numbers \(NaN or infinity\)'),
])
def test_a_click_off_the_image_is_refused_as_it_is_made(
        app, rgb, mode, x, y, message):
    """A box's first corner too (it was kept, and a NaN one failed with a
    traceback when drawn)."""
    _, _, state = app.load_image(rgb)
    with pytest.raises(gr.Error, match=message):
        app.click(rgb, state, mode, x, y)
    with pytest.raises(gr.Error, match=message):
        app.click_frame(
            app.new_clicks('clip.mp4', 0, (150, 100), 4), mode, x, y)


def test_a_box_without_area_keeps_its_first_corner(app, rgb, small_video):
    _, _, state = app.load_image(rgb)
    _, _, state = app.click(rgb, state, 'box', 10, 10)
    for x, y in [(10, 10), (10, 40), (60, 10)]:
        with pytest.raises(
                gr.Error,
                match=r'A box needs its corners apart in x and in y, got '
                rf'\(10, 10\) and \({x}, {y}\): click the corner opposite'):
            app.click(rgb, state, 'box', x, y)
    _, text, state = app.click(rgb, state, 'box', 60, 40)
    assert state['boxes'] == [[10, 10, 60, 40]] and '**1 prompt**' in text
    # The video tab took it as a box (to fail only when tracked).
    _, _, _, clicks = app.load_video(small_video)
    _, _, clicks = app.click_frame(clicks, 'box', 10, 10)
    with pytest.raises(gr.Error, match='A box needs its corners apart'):
        app.click_frame(clicks, 'box', 10, 30)
    _, _, clicks = app.click_frame(clicks, 'box', 30, 30)
    assert clicks['boxes'] == [[10, 10, 30, 30]] and clicks['corner'] is None


def test_prompts_belong_to_the_image_shown(app, rgb):
    """The image's upload request did not run (a full queue refuses it):
    a click uses this image's features, not those of the image before, and
    the prompts of that one are dropped."""
    other = np.ascontiguousarray(rgb[::-1, ::-1])
    _, _, state = app.load_image(rgb)
    _, _, state = app.click(rgb, state, 'point', 40, 30)
    shown, text, stale = app.click(other, state, 'point', 100, 70)
    assert stale['points'] == [[100, 70]]
    assert text.endswith('A new image: the prompts of the one before are '
                         'gone.')
    _, _, fresh = app.load_image(other)
    want, want_text, _ = app.click(other, fresh, 'point', 100, 70)
    np.testing.assert_array_equal(shown, want)
    assert text.startswith(want_text)


def test_two_users_at_once_keep_their_own_images(app, rgb):
    """Two sessions clicking at once (gradio runs handlers in threads):
    each one's masks are those of its own image alone."""
    import threading
    images = [rgb, np.ascontiguousarray(rgb[::-1, ::-1])]
    clicks = [(40, 30), (120, 80), (75, 50)]

    def session(image):
        _, _, state = app.load_image(image)
        shown = []
        for x, y in clicks:
            out, _, state = app.click(image, state, 'point', x, y)
            shown.append(out)
        return shown

    want = [session(image) for image in images]
    got, failures = [None, None], []

    def run(i):
        try:
            for _ in range(2):
                got[i] = session(images[i])
        except BaseException as err:  # reported below
            failures.append(err)

    threads = [threading.Thread(target=run, args=(i, )) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures
    for i in (0, 1):
        for a, b in zip(got[i], want[i]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('frame', [float('nan'), -1, 2.5, 'two'])
def test_a_frame_number_that_is_none_is_a_message(app, small_video, frame):
    _, _, _, state = app.load_video(small_video)
    with pytest.raises(
            gr.Error,
            match=r'The frame is a whole number, 0 or more \(0 is the '
            r'first\), got '):
        app.show_frame(small_video, frame, state)


@pytest.fixture(scope='module')
def reversed_video(small_video, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('rev') / 'back.mp4')
    frames = list(iter_frames(small_video))[::-1]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 64))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_clicks_belong_to_the_video_they_were_made_on(app, small_video,
                                                      reversed_video):
    """Another video's upload request did not run: its tracking does not
    take the clicks of the video before, and a frame picked shows this
    video's frame."""
    _, _, _, state = app.load_video(small_video)
    _, _, state = app.click_frame(state, 'point', 40, 30)
    with pytest.raises(
            gr.Error,
            match='The clicks were made on another video: pick a frame of '
            r'this one with the slider \(or upload it again\)'):
        app.track_clicks(reversed_video, state)
    shown, note, state = app.show_frame(reversed_video, 0, state)
    np.testing.assert_array_equal(shown, _frames_rgb(reversed_video)[0])
    assert state['video'] == reversed_video and state['points'] == []
    assert 'frame 0 (or choose' in note  # its frame count is not known yet


def test_video_sessions_keep_no_frames(app, small_video, reversed_video,
                                       monkeypatch):
    """A session's state holds where its frame is, not the frame: the
    frames kept for drawing clicks are few, for all sessions together,
    and one let go is read again."""
    monkeypatch.setattr(app, 'FRAMES_KEPT', 2)
    states = []
    for video in (small_video, reversed_video):
        _, _, _, state = app.load_video(video)
        for frame in (1, 2, 3):
            _, _, state = app.show_frame(video, frame, state)
            states.append(state)
    assert len(app._frames) == 2
    for state in states:
        assert not any(isinstance(v, np.ndarray) for v in state.values())
    shown, _, _ = app.clear_clicks(states[0])  # small_video's frame 1
    np.testing.assert_array_equal(shown, _frames_rgb(small_video)[1])


def test_a_video_left_by_its_page_stops(app, small_photo, tmp_path):
    """Closing the request's generator (the page closed or reloaded) stops
    the tracking at its next frame, and the model is free again."""
    img = cv2.imread(small_photo)
    path = str(tmp_path / 'long.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 64))
    for t in range(120):
        writer.write(np.ascontiguousarray(img[18:82, t % 50:t % 50 + 96]))
    writer.release()
    done = []
    run = app.iter_track(path, 0.5, lambda p, unit: done.append(p[0]))
    next(run)
    run.close()
    assert app.lock.acquire(timeout=120)
    app.lock.release()
    assert done and max(done) < 120


def test_video_messages_name_the_upload_as_the_user_named_it(app, tmp_path):
    cached = tmp_path / 'gradio-cache-1234'
    cached.mkdir()
    (cached / 'holiday.mp4').write_bytes(b'\x00' * 64)
    for call in (lambda v: app.load_video(v), lambda v: app.track(v, 0.5)):
        with pytest.raises(gr.Error) as err:
            call(str(cached / 'holiday.mp4'))
        assert err.value.message.startswith(
            'Cannot open holiday.mp4 as a video (not a video file')


def test_a_video_longer_than_the_limit_is_refused(app, small_video, tmp_path,
                                                  small_photo, monkeypatch):
    """From its file's frame count, before anything runs; a video whose
    file does not say (a folder of frames) is counted up to the limit, and
    tracked up to it: the frames done are offered, with the reason."""
    _, _, _, state = app.load_video(small_video)
    _, _, state = app.click_frame(state, 'point', 40, 30)
    monkeypatch.setattr(app, 'max_frames', 3)
    message = ('pan.mp4 has 4 frames; the app tracks at most 3 '
               '(--max-frames): cut it shorter, or track it with '
               'demo/video_demo.py.')
    for call in (app.load_video, lambda v: app.track(v, 0.5),
                 lambda v: app.track_clicks(v, state)):
        with pytest.raises(gr.Error) as err:
            call(small_video)
        assert err.value.message == message
    folder = tmp_path / 'frames'
    folder.mkdir()
    photo = cv2.imread(small_photo)
    for i in range(5):
        cv2.imwrite(str(folder / f'{i}.png'), photo)
    with pytest.raises(gr.Error) as err:
        app.load_video(str(folder))
    assert err.value.message.startswith('frames has more than 3 frames; ')
    webm, (mp4, json_path), text = app.track(str(folder), 0.5)
    assert text.startswith('**Stopped after 3 frames**: frames has more '
                           'than 3 frames; the app tracks at most 3')
    info = json.loads(open(json_path).read())
    assert info['num_frames'] == 3 and info['complete'] is False
    cap = cv2.VideoCapture(mp4)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
