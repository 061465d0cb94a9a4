"""tools/make_toy_data.py and tools/toy_train_eval.py as a user runs them:
the toy data is rewritten in its own folders only, and bad arguments or a
failed step end in one line instead of a traceback."""
import json
import os
import os.path as osp
import shutil

import pytest
from helpers import REPO, assert_usage_error, assert_user_error, run_script

SMALL = ('--coco-train', 1, '--coco-val', 1, '--videos', 1)


def _files(root):
    """Every file under ``root`` (relative path -> bytes)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                found[osp.relpath(path, root)] = f.read()
    return found


def test_toy_data_is_written_and_rewritten_in_its_own_folders(tmp_path):
    root = tmp_path / 'toy'
    first = run_script('tools/make_toy_data.py', root, *SMALL)
    assert first.returncode == 0, first.stderr
    written = _files(root)
    with open(root / 'coco' / 'annotations' / 'panoptic_train2017.json') as f:
        assert len(json.load(f)['images']) == 1
    with open(root / 'youtube_vis_2019' / 'train.json') as f:
        assert len(json.load(f)['videos']) == 1
    assert 'coco/TOY_DATA' in written
    assert 'youtube_vis_2019/TOY_DATA' in written

    # Its own folders are rewritten (the same seed gives the same bytes).
    again = run_script('tools/make_toy_data.py', root, *SMALL)
    assert again.returncode == 0, again.stderr
    assert _files(root) == written


def test_toy_data_refuses_a_folder_it_did_not_write(tmp_path):
    """Pointed at a real dataset, the toy files (official names) would
    replace its annotations: refused, nothing changed."""
    real = tmp_path / 'data' / 'coco' / 'annotations'
    real.mkdir(parents=True)
    (real / 'panoptic_train2017.json').write_text('{"real": true}')
    result = run_script('tools/make_toy_data.py', tmp_path / 'data', *SMALL)
    line = assert_user_error(result, str(tmp_path / 'data' / 'coco'),
                             'TOY_DATA', 'empty or new folder')
    assert 'did not write' in line
    assert _files(tmp_path / 'data') == {
        osp.join('coco', 'annotations', 'panoptic_train2017.json'):
        b'{"real": true}'
    }


@pytest.mark.parametrize(
    'tool', ['make_toy_data', 'toy_train_eval', 'analysis/kill_resume'])
def test_a_root_that_is_a_file_is_refused(tmp_path, tool):
    blocker = tmp_path / 'blocker'
    blocker.write_text('keep me')
    args = [blocker] if tool == 'make_toy_data' else ['--root', blocker]
    result = run_script(f'tools/{tool}.py', *args)
    assert_user_error(result, str(blocker), 'is a file')
    assert blocker.read_text() == 'keep me'


@pytest.mark.parametrize('tool, args, option', [
    ('make_toy_data', ['ROOT', '--coco-train', '0'], '--coco-train'),
    ('make_toy_data', ['ROOT', '--videos', '-1'], '--videos'),
    ('toy_train_eval', ['--root', 'ROOT', '--epochs', '0'], '--epochs'),
    ('toy_train_eval', ['--root', 'ROOT', '--threads', 'two'], '--threads'),
    ('analysis/kill_resume', ['--root', 'ROOT', '--videos', '0'], '--videos'),
])
def test_counts_below_one_are_refused(tmp_path, tool, args, option):
    args = [str(tmp_path / 'out') if a == 'ROOT' else a for a in args]
    result = run_script(f'tools/{tool}.py', *args)
    assert_usage_error(result, option, 'whole number >= 1')
    assert not (tmp_path / 'out').exists()


def test_a_failed_training_step_ends_in_its_one_line(tmp_path):
    """tools/train.py refuses a bad --cfg-options value in one line; the
    toy run stops there with that line alone, not a traceback of the
    subprocess call."""
    result = run_script('tools/toy_train_eval.py', '--root', tmp_path / 'toy',
                        '--cfg-options', 'train_dataloader.batch_size=0')
    assert_user_error(
        result, 'train_dataloader.batch_size must be a whole '
        'number >= 1, got 0')
    assert (tmp_path / 'toy' / 'data').is_dir()
    assert not (tmp_path / 'toy' / 'eval_coco').exists()


def test_a_malformed_option_is_refused_before_the_data(tmp_path):
    """An item without = was said by tools/train.py, after the data and
    embeddings were written."""
    result = run_script('tools/toy_train_eval.py', '--root', tmp_path / 'toy',
                        '--cfg-options', 'not_a_key_value')
    assert assert_user_error(result) == (
        'error: --cfg-options takes key=value items, e.g. '
        "train_dataloader.batch_size=4, got 'not_a_key_value'.")
    assert not (tmp_path / 'toy').exists()


def test_far_more_threads_than_cores_are_refused(tmp_path):
    """--threads 100000 trained (each step waiting on 100000 OpenMP
    threads) instead of saying so."""
    cores = len(os.sched_getaffinity(0))
    result = run_script('tools/toy_train_eval.py', '--root', tmp_path / 'toy',
                        '--threads', 100000)
    assert assert_user_error(result) == (
        f'error: --threads 100000 is far above the {cores} cores this '
        f'process may use: give at most {4 * cores} (threads beyond the '
        'cores only wait on each other).')
    assert not (tmp_path / 'toy').exists()


@pytest.mark.parametrize('tool', ['toy_train_eval', 'analysis/kill_resume'])
def test_a_relative_root_is_under_the_current_folder(tmp_path, tool):
    """Run from another folder, ``--root NAME`` is ./NAME there, as every
    tool resolves a relative path, not NAME under the repository. (Stopped
    at the training's refusal of a bad option, after the data is
    written.)"""
    name = f'root_{tmp_path.name}'  # unique, should it land in the repo
    try:
        result = run_script(
            f'tools/{tool}.py',
            '--root',
            name,
            '--cfg-options',
            'train_dataloader.batch_size=0',
            cwd=tmp_path)
        assert_user_error(
            result, 'train_dataloader.batch_size must be a '
            'whole number >= 1, got 0')
        for data in ('coco', 'youtube_vis_2019'):
            assert (tmp_path / name / 'data' / data / 'TOY_DATA').is_file()
        assert (tmp_path / name / 'embd').is_dir()
        assert not osp.exists(osp.join(REPO, name))
    finally:
        if osp.isdir(osp.join(REPO, name)):
            shutil.rmtree(osp.join(REPO, name))


def test_an_earlier_toy_run_is_not_replaced(tmp_path):
    """A second run into the same --root retrained over the first's
    checkpoint (train/epoch_N.pth replaced, exit status 0)."""
    train = tmp_path / 'toy' / 'train'
    train.mkdir(parents=True)
    (train / 'epoch_1.pth').write_bytes(b'the first run')
    result = run_script('tools/toy_train_eval.py', '--root', tmp_path / 'toy')
    assert assert_user_error(result) == (
        f"error: {tmp_path / 'toy'} holds an earlier toy run (epoch_1.pth in "
        'train/): choose another --root, or remove that folder to run again.')
    assert (train / 'epoch_1.pth').read_bytes() == b'the first run'
    assert os.listdir(tmp_path / 'toy') == ['train']


def test_a_model_option_is_refused_before_training(tmp_path):
    """It went to the training only: the evaluation configs could not load
    the weights, found after the whole training."""
    result = run_script('tools/toy_train_eval.py', '--root', tmp_path / 'toy',
                        '--cfg-options', 'model.panoptic_head.num_queries=20')
    assert assert_user_error(result) == (
        'error: --cfg-options model.panoptic_head.num_queries=20: the options '
        'go to the training only, and the evaluation configs could not load '
        'a model changed so; run tools/train.py and tools/test.py with it '
        'yourself.')
    assert not (tmp_path / 'toy').exists()
