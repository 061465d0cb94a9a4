"""demo/demo.py on ONNX Runtime, as a user runs it: ``--backend
onnxruntime`` exports once into the cache and writes the same segments as
the torch run of the same image and weights."""
import json
import os

import pytest
from helpers import assert_ran, assert_usage_error, run_script

DEMO = 'demo/demo.py'
COCO = 'configs/rap_sam/eval_rap_sam_coco.py'


def test_onnxruntime_demo_equals_torch(weights, small_photo, tmp_path):
    env = dict(RAP_SAM_EXPORT_CACHE=tmp_path / 'cache')
    common = [
        small_photo, COCO, '--weights', weights, '--scale', 96, 64,
        '--score-thr', 0.3
    ]
    assert_ran(
        run_script(DEMO, *common, '--out-dir', tmp_path / 'torch', env=env))
    assert_ran(
        run_script(
            DEMO,
            *common,
            '--out-dir',
            tmp_path / 'ort',
            '--backend',
            'onnxruntime',
            '--threads',
            2,
            env=env))
    ours = json.loads((tmp_path / 'ort' / 'coffee.json').read_text())
    ref = json.loads((tmp_path / 'torch' / 'coffee.json').read_text())
    assert ours['segments'], 'the seeded model finds segments'
    assert [s['category'] for s in ours['segments']
            ] == [s['category'] for s in ref['segments']]
    assert [s['segmentation'] for s in ours['segments']
            ] == [s['segmentation'] for s in ref['segments']]
    assert len(os.listdir(tmp_path / 'cache')) == 1  # one cached export


@pytest.mark.parametrize('precision', ['int8', 'int8-bf16'])
def test_int8_is_not_asked_of_the_demo(small_photo, tmp_path, precision):
    """int8 needs calibration images: with a config the usage says how to
    make the export folder that --export then runs."""
    proc = run_script(DEMO, small_photo, COCO, '--precision', precision,
                      '--out-dir', tmp_path / 'o')
    assert_usage_error(
        proc, f'--precision {precision} runs an int8 export folder '
        '(calibrated on your images): make one with tools/deploy/export.py '
        'CONFIG --checkpoint CKPT --out DIR --precision int8 --calib '
        'DIR_OF_IMAGES, then give --export DIR instead of CONFIG')
    assert not (tmp_path / 'o').exists()
