"""tools/analysis/prompt_latency.py as its docstring runs it: bad arguments
and a missing image end in one line."""
from helpers import assert_usage_error, assert_user_error, run_script

TOOL = 'tools/analysis/prompt_latency.py'


def test_counts_below_one_are_usage_errors():
    assert_usage_error(run_script(TOOL, '--runs', 0), '--runs')
    assert_usage_error(run_script(TOOL, '--prompts', 1, -2), '--prompts')


def test_missing_image_is_one_line():
    assert_user_error(
        run_script(TOOL, '--image', 'no/such.jpg'), 'no/such.jpg')
