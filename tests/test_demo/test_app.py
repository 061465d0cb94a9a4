"""The web app: its handlers on good and bad input, and the prompt tab in
headless Chromium (upload an image, click, see the mask)."""
import re
import socket
import urllib.request

import cv2
import gradio as gr
import numpy as np
import pytest
from helpers import config_path

from rap_sam.apis import RapSAMPredictor


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_prompt_tab_in_a_browser(app, small_photo, rgb):
    from browser import (chromium_paths, click_image, shown_image,
                         start_browser, text_of, upload, wait_until)
    if chromium_paths() is None:
        pytest.skip('chromium / chromedriver not installed '
                    '(apt-get install chromium chromium-driver)')
    from app import launch
    port = _free_port()
    ui = launch(app, '127.0.0.1', port)
    driver = None
    try:
        driver = start_browser(1100, 800)
        driver.get(f'http://127.0.0.1:{port}')
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
    finally:
        if driver is not None:
            driver.quit()
        ui.close()
