"""tools/analysis/benchmark.py run as the README runs it (a subprocess):
tiny smoke runs (small inputs, one round), the report's fields and the
printed table, never its timings; bad arguments end in one line."""
import json
import os
import os.path as osp

import pytest
from helpers import (assert_ran, assert_usage_error, assert_user_error,
                     run_script)
from pytest import approx

TOOL = osp.join('tools', 'analysis', 'benchmark.py')
COCO = osp.join('configs', 'rap_sam', 'eval_rap_sam_coco.py')
SMALL = ['--shape', '64', '96', '--warmup', '0', '--repeats', '1']


def run_report(tmp_path, *args):
    out = tmp_path / 'report.json'
    proc = run_script(TOOL, *args, '--out', str(out))
    assert_ran(proc)
    return json.loads(out.read_text()), proc.stdout


def assert_click_split(entry):
    """A click's decoder and post-processing add up to it, run by run."""
    samples = entry['samples_s']
    assert len(samples['decode_cached']) >= 1
    for total, head, post in zip(
            samples['decode_cached'],
            samples['decode_cached_head'],
            samples['decode_cached_post'],
            strict=True):
        assert 0 < head <= total and post >= 0
        assert head + post == approx(total, rel=1e-9)
    med = entry['median_s']
    assert {'decode_cached_head', 'decode_cached_post'} <= med.keys()


def assert_roofline(report, precisions):
    """The machine's peak per precision (the best of its shapes), and the
    floor = the model's GMAC (its FLOP count) / peak."""
    roof = report['roofline']
    assert roof['device'] == 'cpu'
    assert roof['threads'] == report['machine']['threads']
    for precision in set(precisions.values()):
        shapes = roof['gmac_per_s'][precision]
        assert shapes.keys() == {'2048x2048x2048', '67200x1152x128'}
        assert all(v > 0 for v in shapes.values())
        assert roof['peak_gmac_per_s'][precision] == max(shapes.values())
    assert roof['repeats'] == 6  # best of 3, before and after the rounds
    assert roof['below_floor'] == [
        n for n, e in roof['variants'].items()
        if e['floor_s'] is not None and e['network_s'] < e['floor_s']
    ]
    gmac = roof['model_gmac']
    assert gmac == report['variants']['fast']['gflops_total']
    for precision, floor in roof['floor_s'].items():
        assert floor == approx(gmac / roof['peak_gmac_per_s'][precision])
    assert roof['variants'].keys() == precisions.keys()
    for name, precision in precisions.items():
        entry = roof['variants'][name]
        assert entry['precision'] == precision
        assert entry['floor_s'] == roof['floor_s'][precision]


def test_image_with_mask2former(tmp_path):
    report, printed = run_report(tmp_path, COCO, *SMALL, '--threads', '1',
                                 '--compare', 'mask2former', '--accuracy')
    assert report['variants'].keys() == {'reference', 'fast', 'mask2former'}
    assert report['skipped'] == {}
    assert report['task'] == 'image' and report['shape'] == [64, 96]
    assert report['machine']['threads'] == 1
    # Both models with freed memory kept (Mask2Former's time swung 2x with
    # glibc's defaults), and more clicks than rounds: by default.
    assert report['tuned_malloc'] is True
    assert ('note: glibc allocator tuned (no mmap, no trim): accepted'
            in printed)
    assert report['click_repeats'] == 20
    assert len(report['load_average_before']) == 3
    for name, entry in report['variants'].items():
        med = entry['median_s']
        assert {'pre', 'backbone', 'encoder', 'head', 'post',
                'e2e'} <= med.keys()
        assert all(v >= 0 for k, v in med.items() if k != 'post')
        assert entry['fps'] > 0
        assert entry['params_m'] > 30
        assert entry['gflops']['total'] > 0
        assert entry['peak_memory_mb'] >= 0
    assert 'neck' in report['variants']['fast']['median_s']
    # RAP-SAM R50 holds 47.3M parameters (released checkpoint: 47,308,949
    # numbers, of which the class embeddings are buffers, not parameters).
    assert abs(report['variants']['reference']['params_m'] - 47.25) < 0.1
    assert {
        'fast_vs_reference_e2e', 'fast_vs_mask2former_e2e',
        'fast_vs_mask2former_forward'
    } <= report['speedup'].keys()
    # A click decoded on cached features, for RAP-SAM only.
    assert 'decode_cached' in report['variants']['fast']['median_s']
    assert 'decode_cached' not in report['variants']['mask2former']['median_s']
    for name in ('reference', 'fast'):
        assert_click_split(report['variants'][name])
    assert_roofline(report, {'reference': 'fp32', 'fast': 'fp32'})
    roof = report['roofline']
    m2f_e2e = report['variants']['mask2former']['median_s']['e2e']
    for name in ('reference', 'fast'):
        entry, med = roof['variants'][name], report['variants'][name][
            'median_s']
        bound = roof['floor_s']['fp32'] + med['pre'] + med['post']
        assert entry['bound_s'] == approx(bound)
        assert entry['max_vs_mask2former'] == approx(m2f_e2e / bound)
        assert entry['vs_mask2former'] == approx(
            report['variants'][name]['vs_mask2former'])
        assert entry['network_vs_floor'] == approx(
            (med['encoder'] + med['head']) / roof['floor_s']['fp32'])
        assert (f'roofline: {name} can be at most '
                f'{entry["max_vs_mask2former"]:.2f}x Mask2Former') in printed
    assert f'RAP-SAM counts {roof["model_gmac"]:.1f} GMAC' in printed
    assert report['agreement']['baseline'] == 'reference'
    acc = report['agreement']['variants']['fast']
    assert acc['mask_logits_rel_err'] < 1e-4
    assert acc['panoptic_pixel_agreement'] > 0.999
    for word in ('backbone', 'e2e', 'FPS', 'GFLOPs', 'speedup',
                 'x Mask2Former', 'max x Mask2Former', 'network floor (s)',
                 'decode_cached_head', 'decode_cached_post',
                 'fast_vs_mask2former_e2e', 'load average',
                 'agreement fast vs reference'):
        assert word in printed


@pytest.fixture(scope='module')
def every_precision(tmp_path_factory):
    """One run of every backend and precision, int8 with percentile
    ranges: (report, printed)."""
    return run_report(
        tmp_path_factory.mktemp('every'), COCO, *SMALL, '--threads', '1',
        '--variants', 'fast', '--backend', 'torch', 'onnxruntime', 'openvino',
        '--precision', 'fp32', 'bf16', 'int8', 'int8-bf16', '--calibration',
        'percentile', '--no-flops', '--no-memory')


def test_runtime_backends_in_every_precision(every_precision):
    """Every (backend, precision) asked for is timed or skipped with its
    reason; the runtimes' outputs are compared with the torch model's."""
    report, printed = every_precision
    # The peak in each precision torch.mm has; without a FLOP count the
    # floor is unknown, and said so.
    roof = report['roofline']
    bf16_here = report['machine']['avx512_bf16'] or report['machine'][
        'amx_bf16']
    assert roof['gmac_per_s'].keys() == ({'fp32', 'bf16'}
                                         if bf16_here else {'fp32'})
    assert 'no int8 torch.mm' in roof['skipped']['int8']
    assert roof['model_gmac'] is None and roof['floor_s'] is None
    assert "the network's floor is unknown" in printed
    assert 'network floor (s)' in printed
    assert 'max x Mask2Former' not in printed  # no --compare
    for name, entry in roof['variants'].items():
        assert entry['floor_s'] is None and 'not counted' in entry[
            'why_no_floor']
    asked = {
        'fast', 'fast-bf16', 'fast-int8', 'fast-int8-bf16', 'onnxruntime',
        'onnxruntime-bf16', 'onnxruntime-int8', 'onnxruntime-int8-bf16',
        'openvino', 'openvino-bf16', 'openvino-int8', 'openvino-int8-bf16'
    }
    timed, skipped = report['variants'].keys(), report['skipped'].keys()
    assert timed | skipped == asked and not timed & skipped
    assert {
        'fast', 'onnxruntime', 'openvino', 'onnxruntime-int8', 'openvino-int8'
    } <= timed
    assert 'no bfloat16' in report['skipped']['onnxruntime-bf16']
    assert 'no int8 path' in report['skipped']['fast-int8']
    assert 'no int8 path' in report['skipped']['fast-int8-bf16']
    assert 'runs fp32, int8, not int8-bf16' in report['skipped'][
        'onnxruntime-int8-bf16']
    if not (report['machine']['avx512_bf16'] or report['machine']['amx_bf16']):
        assert {'openvino-bf16', 'openvino-int8-bf16'} <= skipped
    else:
        # The int8 export, run with OpenVINO's float operations in bf16.
        assert {'openvino-bf16', 'openvino-int8-bf16'} <= timed
        assert 'openvino-int8-bf16' in report['agreement']['variants']
    for name in skipped:
        assert f'skipped {name}: ' in printed
    header = next(line for line in printed.splitlines()
                  if line.startswith('stage'))
    assert roof['variants'].keys() == timed
    for name in timed:
        med = report['variants'][name]['median_s']
        assert {'pre', 'encoder', 'head', 'post', 'e2e',
                'decode_cached'} <= med.keys()
        assert_click_split(report['variants'][name])
        assert report['variants'][name]['outputs']['instances'] > 0
        assert name in header.split()
    # The calibration photos are said, and which graph int8 quantizes.
    assert ('percentile activation ranges calibrated on demo/demo.jpg, '
            'skimage.data.') in printed
    agreement = report['agreement']
    assert agreement['baseline'] == 'fast'
    assert agreement['variants'].keys() == timed - {'fast', 'fast-bf16'}
    for name in ('onnxruntime', 'openvino'):  # fp32: exact to rounding
        acc = agreement['variants'][name]
        assert acc['class_logits_rel_err'] < 1e-3
        assert acc['mask_logits_rel_err'] < 1e-3
        assert acc['panoptic_pixel_agreement'] > 0.999
        assert acc['instance_labels_equal']
        # Matched by IoU (empty masks of a 64x96 image never match).
        assert 0 < acc['instances_kept'] <= acc['instances'][1]
        assert acc['instance_mask_iou_min'] > 0.99
    for name in ('onnxruntime-int8', 'openvino-int8'):  # approximate
        acc = agreement['variants'][name]
        assert 1e-4 < acc['mask_logits_rel_err'] < 0.5
        assert acc['mask_sign_agreement'] > 0.9
        assert 0 <= acc['instances_kept'] <= acc['instances'][1]
        assert f'agreement {name} vs fast: ' in printed


def int8_row(printed):
    return next(line for line in printed.splitlines()
                if line.startswith('int8 calibration')).split()[2:]


def test_int8_calibration_choice(every_precision, tmp_path):
    """--calibration and --int8-weight-bits reach the quantization: the
    defaults (the export tool's, minmax and 8 bits) and percentile with 7
    bits give the same seeded model, image and calibration photos
    different int8 outputs; the table and the notes say which."""
    percentile, printed = every_precision
    assert int8_row(printed) == [
        'percentile' if '-int8' in name else '-'
        for name in percentile['variants']
    ]
    report, printed = run_report(tmp_path, COCO, *SMALL, '--threads', '1',
                                 '--variants', 'fast', '--backend', 'torch',
                                 'openvino', '--precision', 'fp32', 'int8',
                                 '--no-flops', '--no-memory', '--no-roofline',
                                 '--no-clicks', '--int8-weight-bits', '7')
    assert int8_row(printed) == ['-', '-', 'minmax']
    assert report['variants']['openvino-int8']['calibration'] == 'minmax'
    assert 'calibration' not in report['variants']['openvino']
    assert '7-bit weights, minmax activation ranges calibrated on' in printed
    assert '8-bit weights, percentile activation ranges' in every_precision[1]
    minmax = report['agreement']['variants']
    others = percentile['agreement']['variants']
    # fp32 is the same computation in both runs; int8 is not.
    assert minmax['openvino']['mask_logits_rel_err'] == approx(
        others['openvino']['mask_logits_rel_err'], rel=1e-3)
    assert minmax['openvino-int8']['mask_logits_rel_err'] != approx(
        others['openvino-int8']['mask_logits_rel_err'], rel=1e-3)


def test_prompt_task_in_two_precisions(tmp_path):
    """--dtype is still accepted (the former name of --precision); the
    prompt decoder on a runtime is timed the same way."""
    report, printed = run_report(tmp_path, COCO.replace('coco', 'prompt'),
                                 *SMALL, '--task', 'prompt', '--num-prompts',
                                 '3', '--variants', 'fast', '--dtype', 'fp32',
                                 'bf16', '--backend', 'torch', 'onnxruntime',
                                 '--no-flops', '--no-memory', '--no-roofline')
    # torch's bf16 is timed where the CPU has bf16 instructions only.
    bf16_here = report['machine']['avx512_bf16'] or report['machine'][
        'amx_bf16']
    assert report['variants'].keys() == (
        {'fast', 'onnxruntime'} | ({'fast-bf16'} if bf16_here else set()))
    assert report['skipped'].keys() == (
        {'onnxruntime-bf16'} | (set() if bf16_here else {'fast-bf16'}))
    for entry in report['variants'].values():
        med = entry['median_s']
        assert {'features', 'decode', 'decode_cached', 'e2e'} <= med.keys()
        assert_click_split(entry)
        assert entry['outputs']['instances'] == 3
    acc = report['agreement']['variants']['onnxruntime']
    assert acc['instances'] == [3, 3] and acc['mask_logits_rel_err'] < 1e-3
    assert 'decode_cached' in printed
    assert 'roofline' not in report and 'roofline' not in printed


def test_video_task(tmp_path):
    report, _ = run_report(tmp_path, COCO.replace('coco',
                                                  'yt19'), *SMALL, '--task',
                           'video', '--num-frames', '2', '--variants',
                           'reference', '--no-memory', '--no-roofline')
    entry = report['variants']['reference']
    assert entry['fps'] > 0 and entry['gflops']['total'] > 0


@pytest.mark.parametrize(
    'args, words',
    [
        ([COCO, '--task', 'prompt', '--compare', 'mask2former'
          ], '--compare mask2former needs --task image'),
        ([COCO, '--repeats', '0'
          ], "argument --repeats: expected a whole number >= 1, got '0'"),
        ([COCO, '--warmup', '-1'
          ], "argument --warmup: expected a whole number >= 0, got '-1'"),
        # 0 was the default thread count, -1 a RuntimeError traceback.
        ([COCO, '--threads', '0'
          ], "argument --threads: expected a whole number >= 1, got '0'"),
        ([COCO, '--click-repeats', '0'
          ], "argument --click-repeats: expected a whole number >= 1"),
        ([COCO, '--threads', '-1'
          ], "argument --threads: expected a whole number >= 1, got '-1'"),
        # It timed seeded noise instead, exit 0.
        ([COCO, '--image', 'no/such.jpg'], '--image no/such.jpg: no such file'
         ),
    ])
def test_bad_arguments_end_in_usage(args, words):
    assert_usage_error(run_script(TOOL, *args), words)


@pytest.mark.parametrize(
    'args, words',
    [
        ([COCO, *SMALL, '--variants', 'fast', '--precision', 'int8'
          ], 'error: Nothing to time: every variant asked for is skipped'),
        ([COCO, *SMALL, '--device', 'gpu'
          ], "error: Unknown device 'gpu'; available here: cpu"),
        (['configs/rap_sam/missing.py', *SMALL, '--no-flops'
          ], 'error: Config file not found'),
        ([COCO, '--cfg-options', 'model.neck'
          ], 'error: --cfg-options takes key=value items'),
        ([COCO, *SMALL, '--cfg-options', 'model.neck.dcn_impl=cuda'
          ], "dcn_impl must be one of auto, torch, mmcv, onnx; got 'cuda'"),
        # It was added to the config and changed nothing.
        ([COCO, *SMALL, '--cfg-options', 'model.nek.dcn_impl=torch'],
         "--cfg-options model.nek.dcn_impl: the config has no 'model.nek'"),
        # It was the model builder's TypeError traceback.
        ([COCO, *SMALL, '--cfg-options', 'model.neck.dcn_imp=torch'],
         ("--cfg-options model.neck.dcn_imp=torch: LiteDeformNeck.__init__() "
          "got an unexpected keyword argument 'dcn_imp'; check the spelling")),
    ])
def test_bad_input_ends_in_one_line(args, words):
    assert_user_error(run_script(TOOL, *args), words)


def test_half_post_processing_variant(tmp_path):
    """--post exact half times each fast and runtime variant with both
    post-processings in one run, and --accuracy says how far half moves
    the results (the head's outputs are the same)."""
    report, printed = run_report(tmp_path, COCO, *SMALL, '--threads', '1',
                                 '--variants', 'fast', '--post', 'exact',
                                 'half', '--accuracy', '--no-roofline',
                                 '--no-flops', '--no-memory',
                                 '--no-tune-malloc', '--click-repeats', '2')
    assert report['variants'].keys() == {'fast', 'fast-half'}
    assert report['tuned_malloc'] is False and 'allocator' not in printed
    assert len(report['variants']['fast']['samples_s']['decode_cached']) == 2
    assert 'fast-half' in printed
    agreement = report['agreement']
    assert agreement['baseline'] == 'fast'
    half = agreement['variants']['fast-half']
    assert half['class_logits_rel_err'] == 0
    assert half['instances'][0] == half['instances'][1] > 0
    assert 0.5 < half['kept_mask_iou_mean'] < 1


def test_an_unreadable_image_or_an_earlier_report_is_one_line(tmp_path):
    notes = tmp_path / 'notes.jpg'
    notes.write_text('not a picture')
    assert_user_error(
        run_script(TOOL, COCO, *SMALL, '--image', notes, '--no-flops',
                   '--no-memory', '--no-roofline', '--variants', 'fast'),
        f'error: Cannot read {notes} as an image')
    # Refused before the timing (a report was replaced without a word).
    report = tmp_path / 'bench.json'
    report.write_text('{"my": "earlier results"}')
    assert_user_error(
        run_script(TOOL, COCO, *SMALL, '--out', report),
        f'error: {report} already exists: pass --overwrite')
    assert report.read_text() == '{"my": "earlier results"}'


def test_a_folder_as_out_is_refused_before_timing(tmp_path):
    """It was found when the report was written, after the timing."""
    proc = run_script(TOOL, COCO, *SMALL, '--out', tmp_path, '--overwrite')
    assert assert_user_error(proc) == (
        f'error: --out {tmp_path} is a folder: name a JSON file.')
    assert proc.stdout == ''
    # A folder that cannot be written in, the same (it was said after the
    # timing, the report lost).
    proc = run_script(TOOL, COCO, *SMALL, '--out', '/sys/kernel/bench.json')
    assert assert_user_error(proc).startswith(
        'error: Cannot write /sys/kernel: ')
    assert proc.stdout == ''


def test_a_folder_made_for_the_report_goes_if_the_run_fails(tmp_path):
    out = tmp_path / 'new' / 'bench.json'
    assert_user_error(
        run_script(TOOL, COCO, *SMALL, '--out', out, '--checkpoint',
                   tmp_path / 'none.pth'), 'error: Checkpoint file not found')
    assert os.listdir(tmp_path) == []


def test_cfg_options_change_the_model_timed(tmp_path):
    """--cfg-options reach the model built (the config's own
    ``dcn_impl='auto'`` would pick mmcv's kernel on a GPU); the command in
    the report says what was set."""
    from rap_sam.deploy.benchmark import build_rap_sam

    model = build_rap_sam(COCO, cfg_options={'model.neck.dcn_impl': 'torch'})
    assert model.neck.dcn_impl == 'torch'
    assert build_rap_sam(COCO).neck.dcn_impl == 'auto'
    report, _ = run_report(tmp_path, COCO, *SMALL, '--variants', 'fast',
                           '--no-flops', '--no-memory', '--no-roofline',
                           '--no-clicks', '--cfg-options',
                           'model.neck.dcn_impl=torch')
    assert report['variants'].keys() == {'fast'}
    assert 'model.neck.dcn_impl=torch' in report['command']
