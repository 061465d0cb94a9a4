"""tools/analysis/video_memory.py --dataset, as the README runs it (tiny
frames): it writes a YouTube-VIS video, evaluates it with tools/test.py and
prints a row per length; bad arguments end in one line."""
import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script)

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
