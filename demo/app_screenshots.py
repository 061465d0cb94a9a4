"""Screenshots of the web app's three tabs, taken in headless Chromium.

    python demo/app_screenshots.py [--weights CKPT] [--out-dir assets] \
        [--shots prompts panoptic video track]

Runs the app on 127.0.0.1, uploads scikit-image's sample photos (CC0 /
public domain) and a short clip panning over one, clicks and draws a box,
tracks the clip's instances, then clicks an object on frame 6 of the clip
and tracks it, and writes OUT/app_{prompts,panoptic,video,track}.png
(palette PNGs, small); --shots takes only some of them.
"""
import argparse
import os
import os.path as osp
import socket
import tempfile

# Also puts the repository on sys.path.
from demo_cli import add_trust_checkpoint, guard_interrupts

SHOTS = ('prompts', 'panoptic', 'video', 'track')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--weights', default=None)
    add_trust_checkpoint(parser)
    parser.add_argument('--out-dir', default='assets')
    parser.add_argument(
        '--scale', type=int, nargs=2, default=(640, 384), metavar=('W', 'H'))
    parser.add_argument(
        '--video-thr',
        type=float,
        default=None,
        help="set the video tab's score threshold")
    parser.add_argument(
        '--shots',
        nargs='+',
        choices=SHOTS,
        default=SHOTS,
        help='which screenshots to take (default: all)')
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (gradio, torch, mmdet: seconds): --help and a
    # usage error answer at once, and a Ctrl+C meanwhile is one line.
    guard_interrupts()
    parse_args()

import cv2
import numpy as np
import torch
from app import CONFIG, VIDEO_CONFIG, RapSAMApp, launch
from browser import (click_image, open_tab_when_ready, pick_slider_value,
                     show_video_at, start_browser, text_of, upload, wait_until)
from PIL import Image
from selenium.webdriver.common.by import By
from skimage import data as samples

from rap_sam.apis import RapSAMPredictor


def sample_files(folder: str) -> dict:
    """A photo for each image tab and a webm clip (Chromium plays VP8)."""
    cat = samples.chelsea()[..., ::-1]
    street = samples.astronaut()[..., ::-1]
    paths = dict(
        cat=osp.join(folder, 'chelsea.png'),
        street=osp.join(folder, 'astronaut.png'),
        clip=osp.join(folder, 'coffee_pan.webm'))
    cv2.imwrite(paths['cat'], cat)
    cv2.imwrite(paths['street'], street)
    coffee = samples.coffee()[..., ::-1]
    writer = cv2.VideoWriter(paths['clip'], cv2.VideoWriter_fourcc(*'VP80'), 8,
                             (400, 300))
    for t in range(12):
        writer.write(np.ascontiguousarray(coffee[50:350, 12 * t:12 * t + 400]))
    writer.release()
    return paths


def save_small(driver, path: str) -> None:
    """The page as a palette PNG (photos in screenshots compress badly)."""
    raw = path + '.raw.png'
    driver.save_screenshot(raw)
    Image.open(raw).convert('RGB').quantize(128).save(path, optimize=True)
    os.remove(raw)
    print(f'{path}: {osp.getsize(path) // 1024} KB')


def prompt_tab(driver, files: dict, out_dir: str) -> None:
    upload(driver, 'prompt-input', files['cat'])
    wait_until(lambda: 'Click' in text_of(driver, 'prompt-status'))
    for n, (x, y) in enumerate([(300, 120), (110, 240)], 1):
        click_image(driver, 'prompt-canvas', x, y)
        wait_until(lambda: f'{n} prompt' in text_of(driver, 'prompt-status'))
    driver.find_element(By.XPATH,
                        "//*[@id='mode']//label[contains(., 'box')]").click()
    click_image(driver, 'prompt-canvas', 20, 20)
    wait_until(lambda: 'opposite' in text_of(driver, 'prompt-status'))
    click_image(driver, 'prompt-canvas', 200, 150)
    wait_until(lambda: '3 prompts' in text_of(driver, 'prompt-status'))
    save_small(driver, osp.join(out_dir, 'app_prompts.png'))


def panoptic_tab(driver, files: dict, out_dir: str) -> None:
    open_tab_when_ready(driver, 'Panoptic image')
    upload(driver, 'panoptic-input', files['street'])
    wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, '#panoptic-input img'))
    driver.find_element(By.ID, 'panoptic-run').click()
    wait_until(
        lambda: 'segment' in text_of(driver, 'panoptic-status'), timeout=180)
    save_small(driver, osp.join(out_dir, 'app_panoptic.png'))


def video_tab(driver, files: dict, args) -> None:
    # Tall enough for the whole tab: the frame to click, the results and
    # their summary.
    driver.set_window_size(1200, 1450)
    open_tab_when_ready(driver, 'Video instances')
    upload(driver, 'video-input', files['clip'])
    wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, '#video-input video'))
    wait_until(lambda: 'frame 0 of 12' in text_of(driver, 'track-status'))
    if 'video' in args.shots:
        if args.video_thr is not None:
            pick_slider_value(driver, 'video-thr', args.video_thr)
        driver.find_element(By.ID, 'video-run').click()
        wait_until(
            lambda: 'tracks' in text_of(driver, 'video-status'), timeout=300)
        wait_until(lambda: driver.find_element(By.CSS_SELECTOR,
                                               '#video-output video'))
        show_video_at(driver, 'video-output', 0.7)  # a frame mid-clip
        save_small(driver, osp.join(args.out_dir, 'app_video.png'))
    if 'track' in args.shots:
        # The cup on frame 6, then the track through all 12 frames.
        pick_slider_value(driver, 'track-frame', 6)
        wait_until(lambda: 'frame 6 of' in text_of(driver, 'track-status'))
        click_image(driver, 'track-canvas', 225, 150)
        wait_until(lambda: '1 object' in text_of(driver, 'track-status'))
        driver.find_element(By.ID, 'track-run').click()
        wait_until(
            lambda: '1 object clicked on frame 6' in text_of(
                driver, 'video-status'),
            timeout=300)
        wait_until(lambda: 'clicked' in driver.find_element(
            By.CSS_SELECTOR, '#video-output video').get_attribute('src'))
        show_video_at(driver, 'video-output', 0.3)  # before frame 6
        save_small(driver, osp.join(args.out_dir, 'app_track.png'))


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        from rap_sam.utils.checkpoint import trust_all_checkpoints
        trust_all_checkpoints()
    os.makedirs(args.out_dir, exist_ok=True)
    # Without --weights the model (and any missing class embeddings) are
    # random: seeded, so that a retake shows the same masks.
    torch.manual_seed(0)

    def predictor(config):
        return RapSAMPredictor(config, args.weights, 'cpu', args.scale)

    work = tempfile.mkdtemp(prefix='rap_sam_shots_')
    files = sample_files(work)
    app = RapSAMApp(predictor(CONFIG), lambda: predictor(VIDEO_CONFIG), work)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ui = launch(app, '127.0.0.1', port)
    driver = start_browser(1200, 900)
    try:
        driver.get(f'http://127.0.0.1:{port}')
        if 'prompts' in args.shots:
            prompt_tab(driver, files, args.out_dir)
        if 'panoptic' in args.shots:
            panoptic_tab(driver, files, args.out_dir)
        if 'video' in args.shots or 'track' in args.shots:
            video_tab(driver, files, args)
    except Exception:
        driver.save_screenshot(osp.join(work, 'failed.png'))
        print(f"page at the failure: {osp.join(work, 'failed.png')}")
        raise
    finally:
        driver.quit()
        ui.close()


if __name__ == '__main__':
    main()
