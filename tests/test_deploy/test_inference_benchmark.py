"""InferenceBenchmark in-process, as a library user calls it: the report of
a tiny run (small input, one round), its settings checked before any work,
torch's threads as they were afterwards."""
import json
import os.path as osp

import pytest
import torch
from helpers import REPO
from pytest import approx

from rap_sam.apis.inputs import InputError
from rap_sam.deploy.benchmark import InferenceBenchmark, format_report
from rap_sam.deploy.benchmark.inference_benchmark import MIN_CLICK_REPEATS
from rap_sam.utils.user_errors import UserError

CONFIGS = osp.join(REPO, 'configs', 'rap_sam')
COCO = osp.join(CONFIGS, 'eval_rap_sam_coco.py')
TINY = dict(
    shape=(64, 96),
    warmup=0,
    repeats=1,
    flops=False,
    memory=False,
    roofline=False,
    # Process-wide and for good: not in the test process (the tool's
    # tests see it on by default).
    tune_malloc=False)


def test_image_run_report_and_threads():
    """Both torch modes timed; the report says the threads of the run, and
    torch's own setting is what it was before."""
    before = torch.get_num_threads()
    threads = 1 if before > 1 else 2
    report = InferenceBenchmark(
        COCO, threads=threads, variants=('reference', 'fast'), **TINY).run()
    assert torch.get_num_threads() == before
    assert report['machine']['threads'] == threads
    assert report['variants'].keys() == {'reference', 'fast'}
    assert report['skipped'] == {} and 'agreement' not in report
    assert report['shape'] == [64, 96] and report['padded_shape'] == [64, 96]
    assert report['warmup'] == 0 and report['repeats'] == 1
    # Clicks take milliseconds: more of them than rounds by default.
    assert report['click_repeats'] == MIN_CLICK_REPEATS == 20
    # Mask2Former's time depends on the allocator: tuned by default.
    assert InferenceBenchmark(COCO).tune_malloc is True
    assert report['tuned_malloc'] is False
    assert not any('allocator' in note for note in report['notes'])
    assert 'random weights (seeded)' in report['notes']
    for entry in report['variants'].values():
        med = entry['median_s']
        assert len(entry['samples_s']['e2e']) == 1
        assert med['e2e'] == entry['samples_s']['e2e'][0] > 0
        assert entry['fps'] == approx(1 / med['e2e'])
        # A click on cached features is timed by default.
        assert med['decode_cached'] > 0
        assert len(entry['samples_s']['decode_cached']) == MIN_CLICK_REPEATS
        assert entry['outputs']['instances'] > 0
        assert 'gflops' not in entry and 'peak_memory_mb' not in entry
    assert report['speedup']['fast_vs_reference_e2e'] == approx(
        report['variants']['reference']['median_s']['e2e'] /
        report['variants']['fast']['median_s']['e2e'])
    # What the tool writes and prints.
    assert json.loads(json.dumps(report, default=str))['task'] == 'image'
    assert 'fast_vs_reference_e2e' in format_report(report)


def test_click_repeats_and_no_clicks():
    """click_repeats sets the timed clicks; without clicks the report says
    none were timed."""
    report = InferenceBenchmark(
        COCO, variants=('fast', ), click_repeats=3, **TINY).run()
    assert report['click_repeats'] == 3
    assert len(report['variants']['fast']['samples_s']['decode_cached']) == 3
    assert 'clicks=3' in format_report(report).splitlines()[0]
    report = InferenceBenchmark(
        COCO, variants=('fast', ), clicks=False, **TINY).run()
    assert report['click_repeats'] is None
    assert 'decode_cached' not in report['variants']['fast']['median_s']
    assert 'clicks=' not in format_report(report).splitlines()[0]


def test_video_accuracy_run():
    """A clip: frames per second over the clip's time; with accuracy the
    fast mode is compared with the reference."""
    report = InferenceBenchmark(
        osp.join(CONFIGS, 'eval_rap_sam_yt19.py'),
        task='video',
        num_frames=2,
        accuracy=True,
        **TINY).run()
    fast = report['variants']['fast']
    assert fast['fps'] == approx(2 / fast['median_s']['e2e'])
    agreement = report['agreement']
    assert agreement['baseline'] == 'reference'
    assert agreement['variants'].keys() == {'fast'}
    assert agreement['variants']['fast']['mask_logits_rel_err'] < 1e-4


@pytest.mark.parametrize('settings, words', [
    (dict(task='prompt',
          compare='mask2former'), 'compare=mask2former needs task=image'),
    (dict(task='images'), "task must be one of image, video, prompt, got "
     "'images'"),
    (dict(compare='yoso'), "compare must be 'mask2former' or None"),
    (dict(click_repeats=0), 'click_repeats must be at least 1, got 0'),
    (dict(shape=(16, 64)), 'shape must be at least 32x32'),
])
def test_bad_settings_are_refused_before_any_work(settings, words):
    with pytest.raises(ValueError, match=words):
        InferenceBenchmark('no/such/config.py', **settings)


@pytest.mark.parametrize('device, words', [
    ('foo', "Unknown device 'foo'; available here: cpu"),
    ('cuda:99', "Device 'cuda:99' is not available"),
])
def test_a_device_not_here_is_refused_before_any_work(device, words):
    # It was torch's traceback from the tool, after the argument parsing.
    with pytest.raises(InputError, match=words):
        InferenceBenchmark('no/such/config.py', device=device)


def test_nothing_to_time_is_a_user_error():
    benchmark = InferenceBenchmark(
        COCO, variants=('fast', ), precisions=('int8', ), **TINY)
    with pytest.raises(
            UserError,
            match='Nothing to time: every variant '
            'asked for is skipped here \\(fast-int8: '):
        benchmark.run()
