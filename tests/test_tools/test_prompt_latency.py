"""tools/analysis/prompt_latency.py as its docstring runs it: bad arguments
and a missing image end in one line, the image said before the model is
built; Ctrl+C is one line.

Costs about 30 s on a 2-core machine (four process starts; no model is
built)."""
import pytest
from helpers import (assert_usage_error, assert_user_error, load_tool,
                     run_script)

TOOL = 'tools/analysis/prompt_latency.py'


def test_counts_below_one_are_usage_errors():
    assert_usage_error(run_script(TOOL, '--runs', 0), '--runs')
    assert_usage_error(run_script(TOOL, '--prompts', 1, -2), '--prompts')


def test_missing_image_is_one_line():
    assert_user_error(
        run_script(TOOL, '--image', 'no/such.jpg'), 'no/such.jpg')


def test_the_image_is_checked_before_the_model_is_built(tmp_path):
    """A file that is no image is said first, though the checkpoint is
    missing too: it is read before the model (seconds at full size)."""
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    assert_user_error(
        run_script(TOOL, '--image', text, '--weights', 'no/such.pth'),
        str(text))


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    """Ctrl+C while timing (KeyboardInterrupt) ends the tool with one line
    and the shell's status for it, 128 + SIGINT."""
    tool = load_tool(TOOL)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'measure', interrupted)
    with pytest.raises(SystemExit) as exit_:
        tool.main(['--runs', '1'])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == 'error: interrupted (Ctrl+C).\n'
