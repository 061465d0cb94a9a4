"""tools/analysis/track_prompt_eval.py as a user runs it: toy videos
written by the tool, the toy architecture with seeded weights, per-object
per-frame IoUs and their mean; bad arguments end in one line."""
import json

import numpy as np
import pytest
from helpers import (assert_ran, assert_user_error, load_tool, run_script,
                     toy_checkpoint)

from rap_sam.testing.toy_datasets import uncompressed_rle

TOOL = 'tools/analysis/track_prompt_eval.py'
TOY = 'rap_sam/toy_eval_yt19.py'
CONFIG = f'configs/{TOY}'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A seeded toy video checkpoint and its class embeddings."""
    root = tmp_path_factory.mktemp('toy')
    toy_checkpoint(root, TOY)
    return root


@pytest.mark.parametrize('prompt_frame', ['first', 'last'])
def test_toy_videos_scored(toy, tmp_path, prompt_frame):
    out = tmp_path / 'track.json'
    data = tmp_path / 'val'
    proc = run_script(TOOL, CONFIG, toy / 'toy.pth', '--data-root', str(data),
                      '--toy-videos', '2', '--scale', '64', '64', '--out',
                      str(out), '--prompt-frame', prompt_frame,
                      '--cfg-options',
                      f'model.panoptic_head.ov_classifier_dir={toy}/embd')
    assert_ran(proc)
    assert 'click-to-track:' in proc.stdout
    report = json.loads(out.read_text())
    ann = json.loads((data / 'valid.json').read_text())
    lengths = {v['id']: v['length'] for v in ann['videos']}
    records = report['objects']
    assert len(records) == len(ann['annotations']) > 0
    for record in records:
        assert len(record['ious']) == lengths[record['video_id']]
        assert all(0 <= iou <= 1 for iou in record['ious'])
        assert 0 <= record['match_iou'] <= 1
        # Toy objects are in every frame.
        assert record['frame'] == (0 if prompt_frame == 'first' else
                                   lengths[record['video_id']] - 1)
    every = [iou for r in records for iou in r['ious']]
    summary = report['summary']
    assert summary['frames'] == len(every)
    assert summary['mean_iou'] == pytest.approx(np.mean(every), abs=1e-4)
    assert summary['prompted_frame_iou'] == pytest.approx(
        np.mean([r['ious'][r['frame']] for r in records]), abs=1e-4)
    assert f"mean IoU {summary['mean_iou']:.4f}" in proc.stdout


def test_mask_decoding_and_iou():
    tool = load_tool(TOOL)
    mask = np.zeros((6, 5), bool)
    mask[1:4, 2:5] = True
    assert np.array_equal(tool.decode(uncompressed_rle(mask), 6, 5), mask)
    assert not tool.decode(None, 6, 5).any()
    half = mask.copy()
    half[1:4, 4] = False
    assert tool.mask_iou(half, mask) == pytest.approx(6 / 9)
    assert tool.mask_iou(np.zeros_like(mask), np.zeros_like(mask)) == 1.0
    assert tool.mask_iou(mask, np.zeros_like(mask)) == 0.0


@pytest.mark.parametrize('args, words', [
    (['--data-root', '/nonexistent/val'], 'Annotation file not found'),
    (['--data-root', '{tmp}', '--toy-videos', '0'], '--toy-videos must be'),
])
def test_bad_arguments_one_line(toy, tmp_path, args, words):
    args = [a.replace('{tmp}', str(tmp_path)) for a in args]
    assert_user_error(run_script(TOOL, CONFIG, toy / 'toy.pth', *args), words)
