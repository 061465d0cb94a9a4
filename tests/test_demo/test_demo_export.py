"""demo/demo.py and demo/prompt_demo.py on an export folder (``--export
DIR``), as a user runs them after tools/deploy/export.py: the same segments
as the config and weights exported on the fly, an int8 folder running, and
the options an export folder fixes refused in one line before anything
loads."""
import json
import re
import shutil

import cv2
import pytest
from helpers import (REPO, assert_ran, assert_usage_error, assert_user_error,
                     load_tool, run_logging_imports, run_script)

DEMO = 'demo/demo.py'
PROMPT = 'demo/prompt_demo.py'
COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
# fp32_export's (conftest.py)
SCALE = (96, 64)


@pytest.fixture(scope='module')
def int8_export(fp32_export, tmp_path_factory):
    """Its int8 variant, calibrated on demo/demo.jpg."""
    from rap_sam.deploy.quantize import quantize_export
    calib = tmp_path_factory.mktemp('calib')
    shutil.copy(f'{REPO}/demo/demo.jpg', calib)
    out = tmp_path_factory.mktemp('export') / 'int8'
    quantize_export(str(fp32_export), 'int8', str(calib), str(out))
    return out


def read_json(path):
    return json.loads(path.read_text())


def test_export_gives_the_config_runs_segments(weights, small_photo,
                                               fp32_export, tmp_path):
    # Both run the same fp32 graphs on ONNX Runtime: the segments agree
    # exactly, not within a tolerance.
    assert_ran(
        run_script(
            DEMO,
            small_photo,
            COCO,
            '--weights',
            weights,
            '--backend',
            'onnxruntime',
            '--scale',
            *SCALE,
            '--score-thr',
            0.3,
            '--out-dir',
            tmp_path / 'config',
            env=dict(RAP_SAM_EXPORT_CACHE=tmp_path / 'cache')))
    out = assert_ran(
        run_script(DEMO, small_photo, '--export', fp32_export, '--threads', 2,
                   '--score-thr', 0.3, '--out-dir', tmp_path / 'export'))
    assert re.search(r': [0-9]+ segments? -> ', out)
    ours = read_json(tmp_path / 'export' / 'coffee.json')
    ref = read_json(tmp_path / 'config' / 'coffee.json')
    assert ours['segments'], 'the seeded model finds segments'
    assert (ours['height'], ours['width']) == (100, 150)
    for key in ('category', 'area', 'segmentation'):
        assert [s[key] for s in ours['segments']
                ] == [s[key] for s in ref['segments']], key
    drawn = cv2.imread(str(tmp_path / 'export' / 'coffee.png'))
    assert drawn.shape == (100, 150, 3)


def test_int8_export_runs(small_photo, int8_export, tmp_path):
    assert read_json(int8_export / 'deploy.json')['precision'] == 'int8'
    assert_ran(
        run_script(DEMO, small_photo, '--export', int8_export, '--post',
                   'half', '--out-dir', tmp_path))
    result = read_json(tmp_path / 'coffee.json')
    assert (result['height'], result['width']) == (100, 150)
    assert sum(s['area'] for s in result['segments']) <= 100 * 150
    for s in result['segments']:
        assert s['segmentation']['size'] == [100, 150]
    assert cv2.imread(str(tmp_path / 'coffee.png')).shape == (100, 150, 3)


def test_prompt_demo_on_an_export(small_photo, fp32_export, tmp_path):
    # On OpenVINO, the other runtime; --device cpu is where the runtimes
    # run: nothing to refuse.
    assert_ran(
        run_script(PROMPT, small_photo, '--export', fp32_export, '--backend',
                   'openvino', '--points', '75,50', '--device', 'cpu',
                   '--out-dir', tmp_path))
    result = read_json(tmp_path / 'coffee_prompts.json')
    assert (result['height'], result['width']) == (100, 150)
    [record] = result['prompts']
    assert record['type'] == 'point' and record['xy'] == [75, 50]
    assert record['segmentation']['size'] == [100, 150]
    assert 0 <= record['area'] <= 100 * 150
    shown = cv2.imread(str(tmp_path / 'coffee_prompts.png'))
    assert shown.shape == (100, 150, 3)


# A command line after the image (split at spaces; DIR is the export) and
# its usage error.
REFUSED = [
    (DEMO, f'{COCO} --export DIR', f'give CONFIG ({COCO}) or --export DIR '
     '(DIR), not both'),
    (PROMPT, f'{COCO} --export DIR', 'give CONFIG'),
    (DEMO, '', 'the following arguments are required: config (or --export '
     'DIR'),
    (PROMPT, '', 'the following arguments are required: config (or --export '
     'DIR'),
    (DEMO, '--export DIR --backend torch', '--export runs on onnxruntime or '
     'openvino: leave out --backend torch'),
    (DEMO, '--export DIR --weights w.pth --scale 96 64 --classes c.txt',
     '--export runs an export folder as it is: leave out --weights, --scale '
     'and --classes (export again to change them)'),
    (PROMPT, '--export DIR --num-things 3 --trust-checkpoint',
     'leave out --num-things and --trust-checkpoint (export again'),
    (DEMO, '--export DIR --device cuda', '--export runs on the CPU '
     '(onnxruntime): leave out --device cuda'),
    (DEMO, '--export DIR --backend openvino --device cuda:1',
     '(openvino): leave out --device cuda:1'),
]


# prompt_demo's --points would import torch to parse: left out, each
# refusal answers at once.
@pytest.mark.parametrize('script,args,message', REFUSED)
def test_refused_before_loading(script, args, message, small_photo, tmp_path):
    # DIR need not exist: the options are checked first.
    args = [a.replace('DIR', str(tmp_path / 'none')) for a in args.split()]
    message = message.replace('(DIR)', f'({tmp_path / "none"})')
    proc = run_script(script, small_photo, *args, '--out-dir',
                      tmp_path / 'out')
    assert_usage_error(proc, message)
    assert not (tmp_path / 'out').exists()


def test_refusals_import_no_torch(small_photo, tmp_path):
    proc, imported = run_logging_imports(DEMO, small_photo, '--export',
                                         tmp_path, '--weights', 'w.pth')
    assert_usage_error(proc, 'leave out --weights')
    assert not {'torch', 'mmdet', 'rap_sam'} & imported


def test_options_reach_the_export_predictor(small_photo, int8_export):
    demo = load_tool('demo/demo.py')
    args = demo.parse_args([
        small_photo, '--export',
        str(int8_export), '--post', 'half', '--threads', '1'
    ])
    predictor = demo.load_predictor(args)
    assert (predictor.backend, predictor.precision) == ('onnxruntime', 'int8')
    assert predictor.post == 'half'
    assert predictor.scale == SCALE
    assert predictor.runtime.export_dir == str(int8_export)
    assert predictor.runtime.backend.num_threads == 1


def test_int8_bf16_on_an_int8_export(small_photo, int8_export, tmp_path):
    """--precision int8-bf16 runs an int8 folder on OpenVINO (its float
    operations in bf16); ONNX Runtime's refusal is below."""
    assert_ran(
        run_script(DEMO, small_photo, '--export', int8_export, '--backend',
                   'openvino', '--precision', 'int8-bf16', '--out-dir',
                   tmp_path / 'o'))
    result = read_json(tmp_path / 'o' / 'coffee.json')
    assert (result['height'], result['width']) == (100, 150)
    demo = load_tool('demo/demo.py')
    args = demo.parse_args([
        small_photo, '--export',
        str(int8_export), '--backend', 'openvino', '--precision', 'int8-bf16'
    ])
    predictor = demo.load_predictor(args)
    assert (predictor.backend, predictor.precision) == ('openvino',
                                                        'int8-bf16')


def test_not_an_export_folder(small_photo, tmp_path):
    (tmp_path / 'empty').mkdir()
    proc = run_script(DEMO, small_photo, '--export', tmp_path / 'none',
                      '--out-dir', tmp_path / 'out')
    assert_user_error(
        proc, f'Export folder not found: {tmp_path / "none"} '
        '(make one with tools/deploy/export.py)')
    proc = run_script(PROMPT, small_photo, '--export', tmp_path / 'empty',
                      '--points', '75,50', '--out-dir', tmp_path / 'out')
    assert_user_error(proc, f'{tmp_path / "empty"} is not an export folder')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('folder, precision', [('fp32_export', 'bf16'),
                                               ('int8_export', 'int8-bf16')])
def test_precision_the_folder_lacks(small_photo, request, tmp_path, folder,
                                    precision):
    # The folder's own precision unless one is asked for (the int8 run
    # above asks for none); bf16 and int8-bf16 are OpenVINO's, and --export
    # defaults to ONNX Runtime: the predictor's one-line refusal.
    proc = run_script(DEMO, small_photo, '--export',
                      request.getfixturevalue(folder), '--precision',
                      precision, '--out-dir', tmp_path / 'o')
    assert_user_error(
        proc, 'The onnxruntime backend runs fp32, int8, not '
        f'{precision}; {precision} runs on openvino.')
    assert not (tmp_path / 'o').exists()


def test_a_portrait_photo_on_a_landscape_export(small_photo, fp32_export,
                                                tmp_path):
    # It was a ValueError traceback (larger than the graph input): resized
    # to fit the 96 x 64 input, the results at the photo's own size.
    portrait = tmp_path / 'portrait.png'
    cv2.imwrite(str(portrait), cv2.imread(small_photo).transpose(1, 0, 2))
    assert_ran(
        run_script(DEMO, portrait, '--export', fp32_export, '--score-thr', 0.3,
                   '--out-dir', tmp_path / 'out'))
    result = read_json(tmp_path / 'out' / 'portrait.json')
    assert (result['height'], result['width']) == (150, 100)
    assert cv2.imread(str(tmp_path / 'out' / 'portrait.png')).shape == \
        (150, 100, 3)


def test_a_video_config_on_demo_is_one_line(small_photo, weights, tmp_path):
    # An AttributeError traceback after the model ran.
    assert_user_error(
        run_script(DEMO, small_photo, 'configs/rap_sam/eval_rap_sam_yt19.py',
                   '--weights', weights, '--scale', *SCALE, '--out-dir',
                   tmp_path / 'out'), 'error: This model makes no panoptic '
        'segments')
    assert not (tmp_path / 'out' / 'coffee.json').exists()
