"""The demos start as a user starts them: ``--help`` and a usage error
answer before torch, mmdet or gradio are imported, and a Ctrl+C while they
import is the one line every tool ends a Ctrl+C with, exit status 130; a
SIGTERM (``kill PID``) is one line too, exit status 143."""
import pytest
from helpers import (assert_usage_error, interrupt_while_importing,
                     run_logging_imports, terminate_while_importing)

COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'
# What takes seconds to import; none of it is needed to parse arguments.
HEAVY = {'torch', 'mmdet', 'mmengine', 'mmcv', 'rap_sam', 'gradio', 'cv2'}
INTERRUPTED = 'error: interrupted (Ctrl+C).\n'

# Each demo's own options, said by its --help.
HELP = {
    'demo/demo.py': [
        'usage: demo.py', '--score-thr SCORE_THR', '--backend '
        '{torch,onnxruntime,openvino}', 'inputs [config]',
        '--post {exact,half}', '--export DIR'
    ],
    'demo/prompt_demo.py':
    ['usage: prompt_demo.py', '--points X,Y [X,Y ...]', '--out-dir OUT_DIR'],
    'demo/video_demo.py':
    ['usage: video_demo.py', '--camera N', '--stream URL', '--frame K'],
    'demo/app.py': [
        'usage: app.py', '--video-config VIDEO_CONFIG', '--max-file-size '
        'MAX_FILE_SIZE', 'default 100mb', '--post {exact,half}'
    ],
    'demo/web_server.py':
    ['usage: web_server.py', '--export EXPORT', '--float32'],
    'demo/app_screenshots.py': [
        'usage: app_screenshots.py', '--shots {prompts,panoptic,video,track}',
        '--trust-checkpoint'
    ],
}


@pytest.mark.parametrize('script', sorted(HELP))
def test_help_imports_no_heavy_module(script):
    result, imported = run_logging_imports(script, '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ''
    for fragment in HELP[script]:
        assert fragment in result.stdout
    assert not HEAVY & imported, sorted(HEAVY & imported)


# Each script's command line (split at spaces) and its usage error.
USAGE_ERRORS = [
    ('demo/demo.py', '', 'the following arguments are required: inputs'),
    ('demo/demo.py', 'x.jpg', 'the following arguments are required: '
     'config (or --export DIR, an export folder)'),
    ('demo/prompt_demo.py', 'x.jpg', 'the following arguments are '
     'required: config'),
    ('demo/video_demo.py', COCO, 'give a video file or frame folder, or '
     '--camera N, or --stream URL (one of them)'),
    ('demo/video_demo.py', f'v.mp4 {YT19} --frame 2', '--frame K needs the '
     'objects to track on it'),
    # inf made OpenCV's writer loop for ever; 0 was taken as "not given";
    # the others failed only after segmenting the whole video.
    *[('demo/video_demo.py', f'v.mp4 {YT19} --fps {fps}', 'argument --fps: '
       f"a frame rate above 0 and at most 1000, got '{fps}'")
      for fps in ('inf', '0', '-1', 'nan', '1e9', '1000.5', 'fast')],
    ('demo/app.py', '--max-queue 0', '--max-queue must be at least 1'),
    ('demo/app.py', '--max-file-size 2pc', 'a size such as 20mb, 500kb or '
     "1gb, got '2pc'"),
    # Out of range: a traceback after the model loaded and exported.
    *[('demo/web_server.py', f'--port {port}', 'argument --port: must be a '
       f"port from 0 (any free one) to 65535, got '{port}'")
      for port in ('http', '70000', '-1')],
    ('demo/web_server.py', '--threads 0', 'argument --threads: expected a '
     "whole number >= 1, got '0'"),
    # Refused by the API after the model loaded, naming its parameter.
    ('demo/video_demo.py', f'v.mp4 {YT19} --chunk-frames 0', 'argument '
     "--chunk-frames: expected a whole number >= 1, got '0'"),
    *[(script, f'x {YT19} --score-thr {thr}', 'argument --score-thr: must '
       f"be a number from 0 to 1, got '{thr}'")
      for script in ('demo/video_demo.py', 'demo/demo.py')
      for thr in ('2', 'nan')],
    ('demo/app_screenshots.py', '--shots all', 'argument --shots: invalid '
     "choice: 'all'"),
]


@pytest.mark.parametrize('script, args, message', USAGE_ERRORS)
def test_usage_error_imports_no_heavy_module(script, args, message):
    result, imported = run_logging_imports(script, *args.split())
    assert_usage_error(result, message)
    assert not HEAVY & imported, sorted(HEAVY & imported)


# Command lines that run past the imports (split at spaces).
STARTS = [
    ('demo/demo.py', f'demo/demo.jpg {COCO} --device cpu'),
    # Parsing --points imports rap_sam: the guard is in place before.
    ('demo/prompt_demo.py', f'demo/demo.jpg {COCO} --points 10,10'),
    ('demo/video_demo.py', f'demo/demo.jpg {YT19} --device cpu'),
    ('demo/app.py', '--device cpu'),
    ('demo/web_server.py', ''),
    ('demo/app_screenshots.py', ''),
]


@pytest.mark.parametrize('script, args', STARTS)
def test_ctrl_c_while_importing_is_one_line(script, args):
    code, stderr = interrupt_while_importing(script, *args.split())
    assert (code, stderr) == (130, INTERRUPTED)


@pytest.mark.parametrize('script, args', STARTS)
def test_sigterm_while_importing_is_one_line(script, args):
    code, stderr = terminate_while_importing(script, *args.split())
    assert (code, stderr) == (143, 'error: terminated (SIGTERM).\n')
