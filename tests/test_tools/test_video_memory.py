"""tools/analysis/video_memory.py --dataset, as the README runs it (tiny
frames): it writes a YouTube-VIS video, evaluates it with tools/test.py and
prints a row per length; bad arguments, a run out of memory and Ctrl+C end
in one line.

Costs about 2 minutes on a busy 2-core machine (load 5), the --dataset run
a third of it."""
import os
import signal
import time

import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script, start_in_terminal)

TOOL = 'tools/analysis/video_memory.py'


def test_dataset_rows():
    proc = run_script(TOOL, '--frames', 3, '--size', 40, 64, '--scale', 64, 40,
                      '--dataset')
    header, row = assert_ran(proc).strip().splitlines()
    assert header.split() == [
        'frames', 'peak', 'MB', 'seconds', 'MB/frame', 'video', 'MB', 'x',
        'first', 'masks', 'MB'
    ]
    frames, peak, seconds, video_mb, ratio, masks_mb = row.split()
    assert frames == '3' and int(peak) > 100 and float(seconds) > 0
    assert video_mb == '0' and ratio == '1.00' and int(masks_mb) >= 0


def test_dataset_rows_of_a_config_reading_another_split():
    """The toy config reads train.json (annotated, AP computed): the
    written valid split was not found (a one-line 'Annotation file ...
    train.json not found' about the tool's own data)."""
    proc = run_script(TOOL, '--config', 'configs/rap_sam/toy_eval_yt19.py',
                      '--frames', 2, '--size', 40, 64, '--dataset')
    _, row = assert_ran(proc).strip().splitlines()
    assert row.split()[0] == '2'


@pytest.mark.parametrize('option, value', [('--frames', '-3'),
                                           ('--threads', '0'),
                                           ('--size', 'x')])
def test_counts_below_one_are_usage_errors(option, value):
    args = [option, value] + (['64'] if option == '--size' else [])
    assert_usage_error(run_script(TOOL, *args), option, 'whole number >= 1')


def test_missing_config_is_one_line_before_any_run():
    proc = run_script(TOOL, '--config', 'no/such.py', '--frames', 2)
    assert_user_error(proc, 'no/such.py')
    assert proc.stdout == ''


@pytest.mark.parametrize('args, words', [
    (['--scale', '64', '40'], '--scale applies to --dataset runs only'),
    (['--dataset', '--lazy'], '--lazy applies to runs without --dataset'),
])
def test_options_that_would_be_ignored_are_usage_errors(args, words):
    assert_usage_error(run_script(TOOL, '--frames', 2, *args), words)


def test_a_run_out_of_memory_is_one_line():
    """1.2 TB of frames: the run's allocation fails (torch's allocator
    error, in the run's process); the tool says so in one line."""
    proc = run_script(TOOL, '--frames', 1000, '--size', 20000, 20000)
    assert_user_error(proc, 'The run of 1000 frames ran out of memory',
                      'fewer --frames or a smaller --size')


def test_ctrl_c_is_one_line():
    """Ctrl+C in a terminal signals the whole foreground process group:
    the tool and the run it waits for."""
    proc = start_in_terminal(TOOL, '--frames', 50, '--size', 360, 640)
    try:
        assert proc.stdout.readline().split()[0] == 'frames'  # the header
        time.sleep(1)  # the run is under way
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGINT
    assert stderr == 'error: interrupted (Ctrl+C).\n'
