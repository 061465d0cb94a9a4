"""tools/analysis/postprocess_benchmark.py run as its docstring runs it (a
subprocess): a tiny run's report and table, never its timings; bad
arguments end in one line."""
import json

import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script)

TOOL = 'tools/analysis/postprocess_benchmark.py'


def run_tool(*args):
    return run_script(TOOL, *args)


def test_report_and_table(tmp_path):
    out = tmp_path / 'post.json'
    proc = run_tool('--shape', '128', '192', '--repeats', '1', '--warmup', '0',
                    '--threads', '1', '--out', str(out))
    assert_ran(proc)
    report = json.loads(out.read_text())
    assert report['shape'] == [128, 192] and report['threads'] == 1
    by_kind = {r['outputs']: r for r in report['results']}
    assert set(by_kind) == {'objects', 'random'}
    for r in by_kind.values():
        assert r['identical'] is True
        assert set(
            r['median_s']) == {'reference', 'full', 'bands', 'one_worker'}
        assert set(r['median_cpu_s']) == set(r['median_s'])
        assert all(len(t) == 1 for t in r['samples_s'].values())
        assert r['instances'] > 0
    # Object-like outputs take bands and make panoptic segments; random
    # ones cover most rows: no band.
    assert by_kind['objects']['band_queries'] > 0
    assert by_kind['objects']['segments'] > 0
    assert by_kind['random']['band_queries'] == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('post-processing at 128x192, 1 threads')
    assert lines[2].split()[0] == 'objects' and lines[2].split()[-1] == 'yes'


def test_bad_shape_is_one_line():
    assert_user_error(
        run_tool('--shape', '130', '192'), '--shape 130 192', 'multiples of 4')


def test_bad_arguments_are_usage_errors():
    assert_usage_error(run_tool('--repeats', '0'), '--repeats')
    assert_usage_error(run_tool('--outputs', 'trained'), '--outputs')


def test_unwritable_out_is_one_line_before_timing(tmp_path):
    """--out in a folder that cannot be made (a file is in the way) is said
    in one line, and nothing is written."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('kept')
    proc = run_tool('--shape', '128', '192', '--repeats', '1', '--out',
                    str(blocker / 'post.json'))
    assert_user_error(proc, 'is a file')
    assert proc.stdout == ''
    assert blocker.read_text() == 'kept'


def test_resized_to_original_size(tmp_path):
    """--ori-shape: results resized to a photo's size, as the API's are;
    bands are taken and the results are still mmdet's."""
    out = tmp_path / 'post.json'
    proc = run_tool('--shape', '128', '192', '--ori-shape', '97', '161',
                    '--outputs', 'objects', '--repeats', '1', '--warmup', '0',
                    '--threads', '1', '--out', str(out))
    assert_ran(proc)
    report = json.loads(out.read_text())
    assert report['shape'] == [128, 192]
    assert report['ori_shape'] == [97, 161]
    result, = report['results']
    assert result['identical'] is True
    assert result['band_queries'] > 0 and result['instances'] > 0
    assert proc.stdout.splitlines()[0].startswith(
        'post-processing at 128x192 resized to 97x161, 1 threads')


def test_bad_ori_shape_is_one_line():
    assert_user_error(
        run_tool('--ori-shape', '0', '161'), '--ori-shape 0 161', 'positive')


def test_post_half_against_exact(tmp_path):
    """--post half: the approximate post-processing timed against the
    exact one, with how close its results are (never the timings)."""
    out = tmp_path / 'post.json'
    proc = run_tool('--shape', '256', '384', '--post', 'half', '--repeats',
                    '1', '--warmup', '0', '--threads', '1', '--out', str(out))
    assert_ran(proc)
    report = json.loads(out.read_text())
    assert report['post'] == 'half' and report['shape'] == [256, 384]
    by_kind = {r['outputs']: r for r in report['results']}
    assert set(by_kind) == {'objects', 'random'}
    for r in by_kind.values():
        assert set(r['median_s']) == set(
            r['median_cpu_s']) == {'exact', 'post'}
        assert r['speedup'] == r['median_s']['exact'] / r['median_s']['post']
        assert r['num_instances'] > 0
    objects = by_kind['objects']
    # Every exact instance with pixels is found, and every segment.
    assert 10 < objects['instances']['ref'] == objects['instances']['kept']
    assert objects['instances']['mean_iou'] > 0.9
    assert objects['segments']['ref'] == objects['segments']['kept'] > 0
    assert objects['panoptic_agreement'] > 0.99
    # Random outputs: no panoptic segment, every pixel void in both.
    assert by_kind['random']['panoptic_agreement'] == 1.0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        'post-processing at 256x384, exact against half, 1 threads')
    assert lines[2].split()[0] == 'objects'


@pytest.mark.parametrize('ori_shape', [None, ('150', '250')])
def test_prompt_masks_on_windows_against_full_size(tmp_path, ori_shape):
    """--prompts: every non-empty mask as a click's; the windows' masks are
    the full-size calls' (identical), object-like masks take windows and
    random ones (over most of the image) do not."""
    out = tmp_path / 'prompts.json'
    resize = ['--ori-shape', *ori_shape] if ori_shape else []
    proc = run_tool('--shape', '128', '192', '--prompts', '--repeats', '1',
                    '--warmup', '0', '--threads', '1', '--out', str(out),
                    *resize)
    assert_ran(proc)
    report = json.loads(out.read_text())
    assert report['prompts'] is True
    by_kind = {r['outputs']: r for r in report['results']}
    for r in by_kind.values():
        assert r['identical'] is True and r['masks'] > 0
        assert set(r['median_s']) == set(
            r['median_cpu_s']) == {'full', 'windows'}
    objects = by_kind['objects']
    assert 0 < objects['windowed'] <= objects['masks']
    assert by_kind['random']['windowed'] == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('prompt masks at 128x192')
    assert lines[2].split()[0] == 'objects' and lines[2].split()[-1] == 'yes'


def test_prompts_with_post_is_a_usage_error():
    assert_usage_error(run_tool('--prompts', '--post', 'half'), '--prompts')


def test_bad_post_is_a_usage_error():
    assert_usage_error(run_tool('--post', 'quarter'), '--post')


def test_an_earlier_report_or_a_folder_is_refused_before_timing(tmp_path):
    """An existing --out was replaced without a word, and a folder was
    found only when the report was written, after the timing."""
    report = tmp_path / 'post.json'
    report.write_text('{"my": "earlier results"}')
    args = ['--shape', '128', '192', '--repeats', '1', '--warmup', '0']
    proc = run_tool(*args, '--out', report)
    line = assert_user_error(proc)
    assert line == (f'error: {report} already exists: pass --overwrite to '
                    'replace it, or choose another output file.')
    assert proc.stdout == ''
    assert report.read_text() == '{"my": "earlier results"}'
    proc = run_tool(*args, '--out', tmp_path, '--overwrite')
    assert assert_user_error(proc) == (
        f'error: --out {tmp_path} is a folder: name a JSON file.')
    assert proc.stdout == ''
    proc = run_tool(*args, '--outputs', 'objects', '--out', report,
                    '--overwrite')
    assert_ran(proc)
    assert json.loads(report.read_text())['shape'] == [128, 192]
