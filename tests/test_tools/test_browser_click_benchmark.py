"""tools/analysis/browser_click_benchmark.py as the README runs it (two
clicks, one scale) in headless Chromium, and with the input a user can get
wrong: each ends in one line, before the browser or a server starts, and
an earlier screenshot is replaced only with --overwrite.

Costs about 2 minutes on a 2-core machine: the real run (the server exports
random weights, the page loads onnxruntime-web) is half of it; each
refusal is a process start (a few seconds)."""
import os.path as osp
import re

import cv2
import pytest
from helpers import (REPO, assert_ran, assert_usage_error, assert_user_error,
                     load_tool, run_script)

TOOL = 'tools/analysis/browser_click_benchmark.py'


def _chromium():
    import sys
    sys.path.insert(0, osp.join(REPO, 'demo'))
    from browser import chromium_paths
    return chromium_paths()


@pytest.mark.skipif(
    _chromium() is None, reason='needs chromium and chromedriver')
@pytest.mark.skipif(
    not osp.isdir(load_tool(TOOL).ORT_DIR),
    reason='needs onnxruntime-web: make web-deps (npm ci in demo/web)')
def test_a_row_per_setting_and_the_screenshot_replaced(tmp_path):
    shot = tmp_path / 'shot.png'
    shot.write_text('an earlier screenshot')
    out = assert_ran(
        run_script(TOOL, '--clicks', 2, '--warmup', 0, '--screenshot', shot,
                   '--overwrite'))
    rows = [
        line for line in out.splitlines() if line.lstrip().startswith('864x')
    ]
    assert len(rows) == 1, out
    # scale, image, threads, decode median and p90, upsample median and
    # p90, graph opt
    assert re.fullmatch(r'\s*864x512\s+600x400\s+1(\s+\d+\.\d){4}\s+all',
                        rows[0]), rows[0]
    assert f'screenshot: {shot}' in out
    image = cv2.imread(str(shot))
    # The page's viewport: the 1200 x 780 window less the browser's bars.
    assert image is not None and image.shape[1] == 1200
    assert 400 < image.shape[0] <= 780
    assert [p.name for p in tmp_path.iterdir()] == ['shot.png']


@pytest.mark.parametrize('args, words', [
    (['--clicks', '0'], ['--clicks', 'whole number >= 1']),
    (['--threads', '1', '0'], ['--threads', 'whole number >= 1']),
    (['--warmup', '-1'], ['--warmup', 'whole number >= 0']),
    (['--scale', '864', '512', '1333'], ['--scale takes W H pairs']),
    (['--export', 'DIR', '--scale', '864', '512'], ['leave out --scale']),
])
def test_bad_values_are_usage_errors(args, words):
    assert_usage_error(run_script(TOOL, *args), *words)


@pytest.mark.parametrize('case', [
    'no_weights', 'export_is_a_file', 'no_image', 'screenshot_exists',
    'screenshot_in_a_file', 'screenshot_is_a_folder'
])
def test_bad_input_is_one_line_before_the_browser_starts(tmp_path, case):
    """No row header is printed: nothing started."""
    afile = tmp_path / 'afile'
    afile.write_text('keep me')
    args, words = {
        'no_weights':
        (['--weights',
          tmp_path / 'no.pth'], ['Checkpoint file not found', 'no.pth']),
        'export_is_a_file': (['--export',
                              afile], [f'--export {afile} is not a folder']),
        'no_image': (['--image',
                      tmp_path / 'no.jpg'], ['Image not found', 'no.jpg']),
        'screenshot_exists': (['--screenshot', afile],
                              [str(afile), 'already exists', '--overwrite']),
        'screenshot_in_a_file':
        (['--screenshot', afile / 'shot.png'], [str(afile), 'is a file']),
        'screenshot_is_a_folder':
        (['--screenshot', tmp_path], [f'--screenshot {tmp_path} is a folder']),
    }[case]
    result = run_script(TOOL, *args)
    assert_user_error(result, *words)
    assert result.stdout == ''
    assert afile.read_text() == 'keep me'


def test_missing_chromium_is_one_line(tmp_path, monkeypatch, capsys):
    """No chromium on PATH (the tool looks for it there), onnxruntime-web
    installed or not (it is checked first)."""
    tool = load_tool(TOOL)
    monkeypatch.setattr(tool, 'ORT_DIR', str(tmp_path))
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(SystemExit) as exit_:
        tool.main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: chromium / chromedriver not found') and \
        'apt-get install chromium chromium-driver' in err and \
        err.count('\n') == 1, err


def test_missing_onnxruntime_web_is_one_line(tmp_path, monkeypatch, capsys):
    """The page decodes with onnxruntime-web: without it every click
    failed after the browser and the server had started."""
    tool = load_tool(TOOL)
    monkeypatch.setattr(tool, 'ORT_DIR', str(tmp_path / 'dist'))
    with pytest.raises(SystemExit) as exit_:
        tool.main([])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        'error: onnxruntime-web is not installed, and the page decodes '
        'with it: run `make web-deps` (npm ci in demo/web).\n')


@pytest.mark.parametrize('trust', [[], ['--trust-checkpoint']])
def test_trust_checkpoint_is_passed_to_the_server(tmp_path, monkeypatch,
                                                  trust):
    """The server loads --weights, so it gets --trust-checkpoint too (its
    refusal of the checkpoint would say to pass it); the server's own
    `error:` line is the tool's."""
    import sys
    import types
    tool = load_tool(TOOL)
    started = []

    class Driver:

        def quit(self):
            pass

    def serve_web_demo(args, log, env):
        started.append(args)
        raise RuntimeError('the server exited:\nerror: refused here')

    browser = types.ModuleType('browser')
    browser.start_browser = lambda width, height: Driver()
    browser.serve_web_demo = serve_web_demo
    monkeypatch.setitem(sys.modules, 'browser', browser)
    ckpt = str(tmp_path / 'odd.pth')
    args = tool.parse_args(['--weights', ckpt, *trust])
    with pytest.raises(tool.UserError, match='^refused here$'):
        tool.benchmark(args)
    assert len(started) == 1
    assert started[0][2:] == [
        '--scale', '864', '512', '--weights', ckpt, *trust
    ]


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    """Ctrl+C while measuring (KeyboardInterrupt) ends the tool with one
    line and the shell's status for it, 128 + SIGINT."""
    tool = load_tool(TOOL)
    monkeypatch.setattr(tool, 'check_inputs', lambda args: None)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'benchmark', interrupted)
    with pytest.raises(SystemExit) as exit_:
        tool.main([])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == 'error: interrupted (Ctrl+C).\n'
