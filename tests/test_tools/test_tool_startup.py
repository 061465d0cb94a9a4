"""The tools start as a user starts them: ``--help`` and a usage error
answer before torch, mmdet or rap_sam are imported, and a Ctrl+C while they
import is the one line every tool ends a Ctrl+C with, exit status 130."""
import pytest
from helpers import (TOOL_STARTS, assert_usage_error,
                     interrupt_while_importing, load_tool, run_logging_imports)

# mmengine's config module (DictAction) is allowed: under a second.
HEAVY = {'torch', 'mmdet', 'mmcv', 'rap_sam', 'cv2'}
INTERRUPTED = 'error: interrupted (Ctrl+C).\n'

# Each tool's command line (split at spaces), its usage error, and an
# option its --help shows.
USAGE_ERRORS = [
    ('tools/deploy/export.py', 'cfg.py', 'the following arguments are '
     'required: --out', '--calibration {minmax,percentile}'),
    ('tools/make_toy_data.py', '', 'the following arguments are required: '
     'root', '--coco-train COCO_TRAIN'),
    ('tools/analysis/benchmark.py', 'cfg.py --task all', "argument --task: "
     "invalid choice: 'all'", '--calibration {minmax,percentile}'),
    ('tools/analysis/postprocess_benchmark.py', '--repeats 0', '--repeats '
     'must be >= 1 and --warmup >= 0', '--ori-shape H W'),
    ('tools/analysis/api_memory.py', 'audio', "argument task: invalid "
     "choice: 'audio'", '--rle-masks'),
    ('tools/analysis/video_memory.py', '--lazy --dataset', '--lazy applies '
     'to runs without --dataset', '--frames FRAMES [FRAMES ...]'),
    ('tools/analysis/prompt_latency.py', '--device', 'argument --device: '
     'expected one argument', '--prompts PROMPTS [PROMPTS ...]'),
    ('tools/analysis/track_prompt_eval.py', 'cfg.py ckpt.pth', 'the '
     'following arguments are required: --data-root', '--cfg-options'),
    ('tools/analysis/browser_click_benchmark.py', '--export x --weights w',
     '--export runs at the scale and with the weights it was exported '
     'with', '--graph-opt {disabled,basic,extended,all}'),
    ('tools/toy_train_eval.py', '--epochs 0', "argument --epochs: expected "
     "a whole number >= 1, got '0'", '--threads THREADS'),
    ('tools/analysis/kill_resume.py', '--save-window -1', 'argument '
     "--save-window: expected a number of seconds >= 0, got '-1'",
     '--keep-reference'),
]


@pytest.mark.parametrize('tool, args, message, option', USAGE_ERRORS)
def test_help_and_usage_error_import_no_heavy_module(tool, args, message,
                                                     option):
    result, imported = run_logging_imports(tool, '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ''
    assert result.stdout.startswith('usage: ') and option in result.stdout
    assert not HEAVY & imported, sorted(HEAVY & imported)

    result, imported = run_logging_imports(tool, *args.split())
    assert_usage_error(result, message)
    assert not HEAVY & imported, sorted(HEAVY & imported)


# The tools that load a checkpoint the allow-list may refuse, whose error
# says to pass --trust-checkpoint (tools/analysis/track_prompt_eval.py's is
# run end to end in test_track_prompt_eval.py).
@pytest.mark.parametrize('tool, weights', [
    ('tools/analysis/benchmark.py', '--checkpoint'),
    ('tools/analysis/track_prompt_eval.py', 'CHECKPOINT'),
    ('tools/analysis/prompt_latency.py', '--weights'),
    ('tools/analysis/browser_click_benchmark.py', '--weights'),
    ('demo/app_screenshots.py', '--weights'),
])
def test_help_lists_trust_checkpoint(tool, weights):
    result, imported = run_logging_imports(tool, '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    text = ' '.join(result.stdout.split())
    assert (f'--trust-checkpoint load {weights} even if it holds objects '
            'outside the safe allow-list') in text
    assert not HEAVY & imported, sorted(HEAVY & imported)


@pytest.mark.parametrize('tool, args, message', [
    ('tools/make_toy_data.py', 'root --videos 0', "argument --videos: "
     "expected a whole number >= 1, got '0'"),
    ('tools/analysis/kill_resume.py', '--kills x', "argument --kills: "
     "expected a whole number >= 1, got 'x'"),
    ('tools/analysis/browser_click_benchmark.py', '--warmup -1', 'argument '
     "--warmup: expected a whole number >= 0, got '-1'"),
])
def test_counts_are_checked_without_torch(tool, args, message):
    """rap_sam/utils/arg_types.py's types, run by path: rap_sam's message
    without importing it."""
    result, imported = run_logging_imports(tool, *args.split())
    assert_usage_error(result, message)
    assert not HEAVY & imported, sorted(HEAVY & imported)


@pytest.mark.parametrize(
    'tool', ['tools/deploy/export.py', 'tools/analysis/benchmark.py'])
def test_calibrations_written_out_are_quantize_s(tool):
    from rap_sam.deploy import quantize
    module = load_tool(tool)
    assert module.CALIBRATIONS == quantize.CALIBRATIONS
    assert module.DEFAULT_CALIBRATION == quantize.DEFAULT_CALIBRATION
    assert module.CLI['INT8_WEIGHT_BITS'] == quantize.INT8_WEIGHT_BITS


@pytest.mark.parametrize('tool, args', TOOL_STARTS)
def test_ctrl_c_while_importing_is_one_line(tool, args, tmp_path):
    code, stderr = interrupt_while_importing(
        tool,
        *args.format(tmp=tmp_path).split())
    assert (code, stderr) == (130, INTERRUPTED)
    # Interrupted before it started its work: nothing written.
    assert list(tmp_path.iterdir()) == []
