"""``--post exact|half`` of the demos that segment whole images: demo.py
run as the README runs it, app.py's two predictors, and the demos that
do not offer it."""
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     config_path, run_script)

COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'
# Small: the model's input size, not the results' (demo.jpg's 600 x 400).
SCALE = ('--scale', '96', '64')


def segment_map(json_path) -> tuple:
    """The panoptic result written in demo.py's json: its size, its
    segments' categories, and per pixel the index of the segment covering
    it (-1: none)."""
    info = json.loads(json_path.read_text())
    ids = np.full((info['height'], info['width']), -1)
    for i, segment in enumerate(info['segments']):
        mask = mask_util.decode(segment['segmentation']).astype(bool)
        assert not (ids[mask] >= 0).any(), 'panoptic segments overlap'
        ids[mask] = i
    return ((info['width'], info['height']),
            [s['category'] for s in info['segments']], ids)


@pytest.fixture(scope='module')
def both_posts(weights, tmp_path_factory):
    """demo.jpg segmented by demo.py with --post exact and --post half."""
    out = tmp_path_factory.mktemp('post')
    for post in ('exact', 'half'):
        # Random weights are never 0.8 sure of a class.
        assert_ran(
            run_script('demo/demo.py', 'demo/demo.jpg', COCO, '--weights',
                       weights, *SCALE, '--score-thr', '0.3', '--device',
                       'cpu', '--post', post, '--out-dir', out / post))
    return out


def test_half_writes_the_panoptic_result_of_exact(both_posts):
    exact_size, exact_names, exact = segment_map(both_posts / 'exact' /
                                                 'demo.json')
    half_size, half_names, half = segment_map(both_posts / 'half' /
                                              'demo.json')
    assert exact_size == half_size == (600, 400)
    assert exact_names, 'the seeded model finds segments'
    assert half_names == exact_names
    agree = (half == exact).mean()
    assert agree >= 0.95, f'{agree:.4f} of pixels in the same segment'
    # Equal maps would mean --post half never reached the predictor (its
    # mask edges move by about a pixel).
    assert agree < 1
    for post in ('exact', 'half'):
        drawn = cv2.imread(str(both_posts / post / 'demo.png'))
        assert drawn.shape == (400, 600, 3)


def test_half_is_refused_for_a_video_model_in_one_line(weights, tmp_path):
    result = run_script('demo/demo.py', 'demo/demo.jpg', YT19, '--weights',
                        weights, *SCALE, '--device', 'cpu', '--post', 'half',
                        '--out-dir', tmp_path / 'out')
    assert_user_error(result, "post='half' is for image models",
                      "use post='exact'")
    assert not (tmp_path / 'out').exists()


def test_an_unknown_post_is_a_usage_error(tmp_path):
    result = run_script('demo/demo.py', 'demo/demo.jpg', COCO, '--post',
                        'bogus', '--out-dir', tmp_path / 'out')
    assert_usage_error(
        result, 'argument --post: invalid choice: '
        "'bogus' (choose from 'exact', 'half')")


@pytest.mark.parametrize('script, args',
                         [('demo/prompt_demo.py', ('demo/demo.jpg', COCO)),
                          ('demo/video_demo.py', ('v.mp4', YT19)),
                          ('demo/web_server.py', ())])
def test_demos_that_never_fuse_whole_images_have_no_post(script, args):
    # Clicks and boxes skip the fusion head, and a video model's clip
    # linker reads exact masks: --post would do nothing or be refused.
    result = run_script(script, *args, '--post', 'half')
    assert_usage_error(result, 'unrecognized arguments: --post half')


def test_the_choices_are_the_librarys():
    from demo_cli import POSTS as demo_posts

    from rap_sam.deploy.prepare import POSTS
    assert demo_posts == POSTS


def test_the_int8_precisions_are_the_librarys():
    from demo_cli import INT8_PRECISIONS

    from rap_sam.deploy.backends import PRECISIONS, reads_int8_folder
    assert INT8_PRECISIONS == tuple(
        p for p in PRECISIONS if reads_int8_folder(p))


def test_app_fuses_images_half_and_tracks_videos_exact(weights):
    from app import load_predictors, parse_args

    from rap_sam.models.seg_heads import HalfResolutionFusionHead
    args = parse_args(
        ['--weights', weights, '--device', 'cpu', *SCALE, '--post', 'half'])
    assert args.config == config_path('rap_sam/eval_rap_sam_coco.py')
    image, video = load_predictors(args)
    assert image.post == 'half'
    assert type(image.model.panoptic_fusion_head) is HalfResolutionFusionHead
    video = video()
    assert video.post == 'exact'
    assert not isinstance(video.model.panoptic_fusion_head,
                          HalfResolutionFusionHead)
    # Without --post the image predictor is the library's default, exact.
    image, _ = load_predictors(
        parse_args(['--weights', weights, '--device', 'cpu', *SCALE]))
    assert image.post == 'exact'
