"""demo/video_demo.py --frame K --points/--boxes run as a user runs it: the
prompted objects tracked through a video (before and after frame K), only
they drawn and listed, the json's masks those of track_prompt; bad
prompts and frame numbers end in one ``error:`` line and write nothing."""
import importlib
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script)
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from rap_sam.apis import RapSAMPredictor, iter_frames
from rap_sam.utils.interrupt_guard import Terminated

DEMO = 'demo/video_demo.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'


def test_prompted_objects_tracked(small_video, weights, tmp_path):
    out = tmp_path / 'out'
    proc = run_script(DEMO, small_video, YT19, '--weights', weights, '--scale',
                      '96', '64', '--frame', '2', '--points', '40,30',
                      '--boxes', '5,5,50,50', '--out-dir', str(out))
    assert_ran(proc)
    assert '4 frames, 2 tracks' in proc.stdout
    info = json.loads((out / 'pan.json').read_text())
    assert info['complete'] and info['num_frames'] == 4
    assert info['prompt_frame'] == 2
    assert [(p['id'], p['type']) for p in info['prompts']] == [(1, 'point'),
                                                               (2, 'box')]
    assert info['prompts'][0]['xy'] == [40, 30]
    assert all(0 <= p['match_iou'] <= 1 for p in info['prompts'])
    assert [t['id'] for t in info['tracks']] == [1, 2]

    predictor = RapSAMPredictor(YT19, weights, 'cpu', scale=(96, 64))
    frames = list(iter_frames(small_video))
    expected = predictor.track_prompt(
        frames, 2, points=[[40, 30]], boxes=[[5, 5, 50, 50]])
    for track in info['tracks']:
        assert [f['frame'] for f in track['frames']] == [0, 1, 2, 3]
        for record, result in zip(track['frames'], expected):
            rle = dict(record['segmentation'])
            rle['counts'] = rle['counts'].encode()
            mask = mask_util.decode(rle).astype(bool)
            want = result.pred_track_instances.masks[track['id'] - 1]
            assert np.array_equal(mask, want.numpy())
        assert track['label'] == int(
            expected[2].pred_track_instances.labels[track['id'] - 1])

    cap = cv2.VideoCapture(str(out / 'pan.mp4'))
    count = 0
    ok, frame = cap.read()
    while ok:
        assert frame.shape == (64, 96, 3)
        count += 1
        ok, frame = cap.read()
    assert count == 4


@pytest.mark.parametrize(
    'args, words',
    [
        (['--points', '500,10'], 'outside the image'),
        # The option typed, not the API's frame_index.
        (['--frame', '9', '--points', '10,10'],
         "error: --frame 9 is past the video's last frame (it has 4 frames"),
        (['--boxes', '30,30,20,40'], 'x2 > x1'),
    ])
def test_bad_prompt_one_line(small_video, weights, tmp_path, args, words):
    out = tmp_path / 'out'
    proc = run_script(DEMO, small_video, YT19, '--weights', weights, '--scale',
                      '96', '64', '--out-dir', str(out), *args)
    assert 'frame_index' not in assert_user_error(proc, words)
    assert not list(out.glob('pan*'))


@pytest.mark.parametrize('args, words', [
    (['--frame', '1'], '--frame K needs'),
    (['--frame', '-1', '--points', '1,1'], '--frame must be 0 or more'),
    (['--points', '1'], 'A point must be 2'),
])
def test_bad_arguments(small_video, args, words):
    assert_usage_error(run_script(DEMO, small_video, YT19, *args), words)


def test_live_source_refused():
    assert_usage_error(
        run_script(DEMO, '--camera', '0', YT19, '--points', '1,1'),
        'not a camera or stream')


# ----------------------------------------------------------------------
# what the partial json says, and the source's frame rate
# ----------------------------------------------------------------------
class _Named:
    class_names = ['person', 'car']


def _one_track(frame):
    """A result with one track covering the frame's top-left corner."""
    masks = torch.zeros((1, ) + frame.shape[:2], dtype=torch.bool)
    masks[0, :8, :8] = True
    result = DetDataSample()
    result.pred_track_instances = InstanceData(
        masks=masks,
        labels=torch.tensor([1]),
        scores=torch.tensor([0.75]),
        instances_id=torch.tensor([3]))
    return result


def _failing_after(count, error):
    frame = np.zeros((24, 32, 3), np.uint8)
    for _ in range(count):
        yield frame, _one_track(frame)
    raise error


@pytest.mark.parametrize('error, text', [
    (KeyboardInterrupt(), 'interrupted (Ctrl+C) after 2 frames'),
    (Terminated(), 'terminated (SIGTERM) after 2 frames'),
    (MemoryError(), 'stopped after 2 frames by MemoryError (no message)'),
    (RuntimeError('CUDA error: device lost'), 'CUDA error: device lost'),
])
def test_the_partial_json_says_why_in_words(tmp_path, error, text):
    """A Ctrl+C was written as "KeyboardInterrupt"."""
    video_demo = importlib.import_module('video_demo')
    stem = str(tmp_path / 'clip')
    with pytest.raises(type(error)) as raised:
        video_demo.track_video_to_files(
            _Named(), 'clip.mp4', stem, results=_failing_after(2, error))
    if isinstance(error, KeyboardInterrupt):
        # What was kept goes into cli_errors' one line, not a line before.
        assert raised.value.args == (
            f'the 2 frames segmented before it are in {stem}.mp4 and '
            f'{stem}.json', )
    info = json.loads((tmp_path / 'clip.json').read_text())
    assert info['complete'] is False and info['num_frames'] == 2
    assert info['error'] == text
    assert [t['id'] for t in info['tracks']] == [3]
    assert [f['frame'] for f in info['tracks'][0]['frames']] == [0, 1]
    assert sorted(p.name
                  for p in tmp_path.iterdir()) == ['clip.json', 'clip.mp4']


@pytest.mark.parametrize('fps', [1000, 999.5, 0.5])
def test_source_info_takes_the_rates_the_writer_takes(tmp_path, fps):
    """A 1000 fps video was read as of unknown rate (then written at 10),
    while --fps 1000 and the writer take it."""
    path = str(tmp_path / 'fast.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), fps,
                             (32, 24))
    for _ in range(2):
        writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    video_demo = importlib.import_module('video_demo')
    assert video_demo.source_info(path) == (fps, 2)
    assert video_demo.frame_rate(str(fps)) == fps
