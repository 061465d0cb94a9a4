"""tools/analysis/api_memory.py as docs/usage.md runs it (tiny sizes):
one line of figures; sizes and counts below one, a size too large for
memory and Ctrl+C end in one line.

Costs about 50 s on a 2-core machine: one run builds the COCO model
(random weights), the others end before any model is built."""
import re

import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     load_tool, run_script)

TOOL = 'tools/analysis/api_memory.py'


def test_prompts_line():
    out = assert_ran(
        run_script(TOOL, 'prompts', '--num', 5, '--size', 64, 64,
                   '--batch-size', 2))
    line = out.strip().splitlines()[-1]
    found = re.fullmatch(
        r'prompts: 64 x 64 \(0\.0 MP\) at scale 64: peak RSS (\d+) MB, '
        r'\+(\d+) MB over the loaded model and image; 5 prompts, masks 0 MB; '
        r'[\d.]+ s', line)
    assert found, line
    assert int(found.group(1)) > 100  # torch and the model are in it


@pytest.mark.parametrize('args, option', [
    (['image', '--size', '0', '64'], '--size'),
    (['video', '--frames', '-1'], '--frames'),
])
def test_counts_below_one_are_usage_errors(args, option):
    assert_usage_error(run_script(TOOL, *args), option, 'whole number >= 1')


def test_a_size_too_large_for_memory_is_one_line():
    """11 TiB: numpy refuses the allocation, before the model is built."""
    result = run_script(TOOL, 'image', '--size', 2000000, 2000000)
    assert_user_error(result, 'Out of memory', 'choose a smaller --size')
    assert result.stdout == ''


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    """Ctrl+C during the call (KeyboardInterrupt) ends the tool with one
    line and the shell's status for it, 128 + SIGINT."""
    tool = load_tool(TOOL)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'measure', interrupted)
    with pytest.raises(SystemExit) as exit_:
        tool.main(['image'])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == 'error: interrupted (Ctrl+C).\n'
