"""The demos with their stdout closed early, as ``demo.py ... | head -1``
leaves it once head has its line: one line on stderr, exit status 141 (as a
shell reports a program a closed pipe ended), no ``BrokenPipeError``
traceback; results written before stay whole, no temporary is left."""
import json
import os

import cv2
from helpers import STDOUT_CLOSED, run_with_closed_stdout

COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'
SMALL = ['--scale', '64', '64', '--device', 'cpu']


def assert_stopped(result) -> None:
    stderr = result.stderr
    assert result.returncode == 141, stderr[-4000:]
    assert 'Traceback' not in stderr and 'Logging error' not in stderr, \
        stderr[-4000:]
    assert stderr.splitlines()[-1] == STDOUT_CLOSED, stderr[-4000:]
    assert stderr.count('error:') == 1, stderr[-4000:]


def test_demo_folder_stops_after_the_result_it_could_not_report(
        tmp_path, small_photo):
    """Without --weights nothing is logged to stdout before the first
    image's line: that image's results are written, then the run stops."""
    folder, out = tmp_path / 'in', tmp_path / 'out'
    folder.mkdir()
    img = cv2.imread(small_photo)
    for i in range(3):
        cv2.imwrite(str(folder / f'p{i}.png'), img)
    result = run_with_closed_stdout('demo/demo.py', folder, COCO, *SMALL,
                                    '--out-dir', out)
    assert_stopped(result)
    assert sorted(os.listdir(out)) == ['p0.json', 'p0.png']
    assert json.loads(
        (out / 'p0.json').read_text())['image'] == str(folder / 'p0.png')


def test_demo_log_line_to_a_closed_stdout(tmp_path, small_photo, weights):
    """With --weights, mmengine's log line (to stdout) is the first write:
    the run stops there, before any result, instead of printing logging's
    '--- Logging error ---' traceback for it."""
    result = run_with_closed_stdout('demo/demo.py', small_photo, COCO,
                                    '--weights', weights, *SMALL, '--out-dir',
                                    tmp_path / 'out')
    assert_stopped(result)
    assert not (tmp_path / 'out').exists()


def test_video_demo_summary_to_a_closed_stdout(tmp_path, small_video):
    """The summary line is video_demo.py's only write to stdout: the mp4
    and json are complete by then and stay."""
    out = tmp_path / 'out'
    result = run_with_closed_stdout('demo/video_demo.py', small_video, YT19,
                                    *SMALL, '--out-dir', out)
    assert_stopped(result)
    assert sorted(os.listdir(out)) == ['pan.json', 'pan.mp4']
    assert json.loads((out / 'pan.json').read_text())['complete'] is True


def test_prompt_demo_result_lines_to_a_closed_stdout(tmp_path, small_photo):
    """Without --weights the first write to stdout is the first prompt's
    line, printed after the png and json are complete: they stay, and the
    run ends in one line instead of a BrokenPipeError traceback."""
    out = tmp_path / 'out'
    result = run_with_closed_stdout('demo/prompt_demo.py', small_photo, COCO,
                                    *SMALL, '--points', '40,30', '--boxes',
                                    '10,20,140,90', '--out-dir', out)
    assert_stopped(result)
    assert sorted(
        os.listdir(out)) == ['coffee_prompts.json', 'coffee_prompts.png']
    info = json.loads((out / 'coffee_prompts.json').read_text())
    assert [p['type'] for p in info['prompts']] == ['point', 'box']
