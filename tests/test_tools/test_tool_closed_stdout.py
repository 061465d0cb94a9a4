"""The tools with their stdout closed early (``tools/test.py ... | head
-1``): one line on stderr and exit status 141, not logging's ``--- Logging
error ---`` traceback for every record mmengine logs after, then a
``BrokenPipeError`` traceback."""
import subprocess
import sys

from helpers import (REPO, STDOUT_CLOSED, config_path, run_with_closed_stdout,
                     toy_checkpoint)


def test_test_tool_logging_to_a_closed_stdout(tmp_path):
    toy_checkpoint(tmp_path, 'rap_sam/toy_eval_coco.py')
    result = run_with_closed_stdout(
        'tools/test.py', config_path('rap_sam/toy_eval_coco.py'),
        tmp_path / 'toy.pth', '--work-dir', tmp_path / 'work', '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={tmp_path / "embd"}')
    assert result.returncode == 141, result.stderr[-4000:]
    assert result.stderr.splitlines() == [STDOUT_CLOSED], result.stderr[-4000:]


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback():
    """A BrokenPipeError from a socket or a child's pipe is not the user's
    doing: it stays a traceback (stdout is open here)."""
    script = ('from rap_sam.utils.user_errors import cli_errors\n'
              'with cli_errors():\n'
              "    raise BrokenPipeError(32, 'Broken pipe')\n")
    result = subprocess.run([sys.executable, '-c', script],
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == \
        'Traceback (most recent call last):'
    assert result.stderr.splitlines()[-1] == \
        'BrokenPipeError: [Errno 32] Broken pipe'
