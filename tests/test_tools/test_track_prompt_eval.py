"""tools/analysis/track_prompt_eval.py as a user runs it: toy videos
written by the tool, the toy architecture with seeded weights, per-object
per-frame IoUs and their mean; bad input ends in one line before any work,
and nothing is written over without --overwrite.

Costs about 3 minutes on a busy 2-core machine: a process start (torch,
mmengine) is most of each of its 13 runs."""
import json

import numpy as np
import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     load_tool, run_script, toy_checkpoint)

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
    """The README's run at 64 x 64; the second writes over an earlier
    result, as --overwrite asks."""
    out = tmp_path / 'track.json'
    data = tmp_path / 'val'
    replace = []
    if prompt_frame == 'last':
        out.write_text('an earlier result')
        replace = ['--overwrite']
    proc = run_script(TOOL, CONFIG, toy / 'toy.pth', '--data-root', str(data),
                      '--toy-videos', '2', '--scale', '64', '64', '--out',
                      str(out), '--prompt-frame', prompt_frame, *replace,
                      '--cfg-options',
                      f'model.panoptic_head.ov_classifier_dir={toy}/embd')
    assert_ran(proc)
    assert [p.name for p in tmp_path.iterdir()
            if p.name.startswith('.')] == []  # no temporary file left
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


def test_unsafe_checkpoint_loads_with_trust_checkpoint(toy, tmp_path):
    """A checkpoint holding an object outside the allow-list is refused
    with the advice to pass --trust-checkpoint, which the tool takes."""
    import argparse

    import torch
    ckpt = tmp_path / 'odd.pth'
    torch.save(
        dict(
            state_dict=torch.load(toy / 'toy.pth')['state_dict'],
            meta=dict(args=argparse.Namespace(lr=0.1))), ckpt)
    out = tmp_path / 'track.json'
    args = [
        CONFIG, ckpt, '--data-root', tmp_path / 'val', '--toy-videos', '1',
        '--scale', '64', '64', '--out', out, '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={toy}/embd'
    ]
    assert_user_error(
        run_script(TOOL, *args), str(ckpt), 'argparse.Namespace',
        '--trust-checkpoint')
    assert not out.exists()
    proc = run_script(TOOL, *args, '--trust-checkpoint')
    assert_ran(proc)
    report = json.loads(out.read_text())
    assert report['summary']['frames'] > 0
    assert f"mean IoU {report['summary']['mean_iou']:.4f}" in proc.stdout


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


def _write(path, content) -> str:
    path.write_text(json.dumps(content))
    return path.name


@pytest.mark.parametrize('case', [
    'no_data_root', 'data_root_is_a_file', 'video_not_listed',
    'frames_and_segmentations_differ', 'no_annotations', 'out_is_a_folder',
    'out_in_a_file', 'out_exists'
])
def test_bad_input_is_one_line_before_any_work(toy, tmp_path, case):
    """Each ends in one line naming the problem, before the model is built
    (no mmengine line on stdout) and before any file is written."""
    video = dict(id=1, width=8, height=8, file_names=['a.jpg', 'b.jpg'])
    obj = dict(id=7, video_id=1, category_id=1, segmentations=[None, None])
    (tmp_path / 'file').write_text('keep me')
    ann = {
        'video_not_listed':
        dict(videos=[video], annotations=[dict(obj, video_id=2)]),
        'frames_and_segmentations_differ':
        dict(videos=[video], annotations=[dict(obj, segmentations=[None])]),
        'no_annotations':
        dict(videos=[video], annotations=None),
    }.get(case, dict(videos=[video], annotations=[obj]))
    _write(tmp_path / 'valid.json', ann)
    out = {
        'out_is_a_folder': tmp_path,
        'out_in_a_file': tmp_path / 'file' / 'track.json',
        'out_exists': tmp_path / 'file',
    }.get(case, tmp_path / 'track.json')
    root = {
        'no_data_root': tmp_path / 'nowhere',
        'data_root_is_a_file': tmp_path / 'file',
    }.get(case, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_script(TOOL, CONFIG, toy / 'toy.pth', '--data-root', root,
                      '--out', out)
    assert_user_error(
        proc, *{
            'no_data_root': ['Annotation file not found', 'nowhere'],
            'data_root_is_a_file': [f'--data-root {root} is a file'],
            'video_not_listed': ['annotation 7 is of video 2'],
            'frames_and_segmentations_differ':
            ['annotation 7 has 1 segmentations for 2 frames'],
            'no_annotations': ['has no annotations to prompt'],
            'out_is_a_folder': [f'--out {out} is a folder'],
            'out_in_a_file': [str(tmp_path / 'file'), 'is a file'],
            'out_exists': [str(out), 'already exists', '--overwrite'],
        }[case])
    assert proc.stdout == ''
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / 'file').read_text() == 'keep me'


@pytest.mark.parametrize('option, value', [('--toy-videos', '0'),
                                           ('--chunk-frames', '-1'),
                                           ('--scale', '0')])
def test_counts_below_one_are_usage_errors(toy, tmp_path, option, value):
    args = [option, value] + (['64'] if option == '--scale' else [])
    proc = run_script(TOOL, CONFIG, toy / 'toy.pth', '--data-root',
                      tmp_path / 'val', *args)
    assert_usage_error(proc, option, 'whole number >= 1')
    assert not (tmp_path / 'val').exists()


def test_ctrl_c_is_one_line(tmp_path, monkeypatch, capsys):
    """Ctrl+C during the evaluation (KeyboardInterrupt) ends the tool with
    one line and the shell's status for it, 128 + SIGINT."""
    tool = load_tool(TOOL)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'evaluate', interrupted)
    with pytest.raises(SystemExit) as exit_:
        tool.main([CONFIG, 'ckpt.pth', '--data-root', str(tmp_path)])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == (
        'error: interrupted (Ctrl+C); nothing was written to --out.\n')


@pytest.mark.parametrize('option, words', [
    ('model.nek.dcn_impl=torch', "the config has no 'model.nek'"),
    ('model.neck.dcn_imp=torch', "unexpected keyword argument 'dcn_imp'"),
])
def test_a_misspelt_config_option_is_one_line(toy, tmp_path, option, words):
    """A misspelt parent key was added and changed nothing; a misspelt last
    key ended in the model builder's TypeError traceback."""
    proc = run_script(TOOL, CONFIG, toy / 'toy.pth', '--data-root',
                      tmp_path / 'val', '--toy-videos', '1', '--out',
                      tmp_path / 'track.json', '--cfg-options', option,
                      f'model.panoptic_head.ov_classifier_dir={toy}/embd')
    line = assert_user_error(proc, words)
    assert line.startswith(f'error: --cfg-options {option.split("=")[0]}')
    assert not (tmp_path / 'track.json').exists()
