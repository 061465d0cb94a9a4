"""demo/demo.py on ONNX Runtime, as a user runs it: ``--backend
onnxruntime`` exports once into the cache and writes the same segments as
the torch run of the same image and weights."""
import json
import os
import subprocess
import sys

from helpers import REPO, assert_usage_error

COCO = 'configs/rap_sam/eval_rap_sam_coco.py'


def run_demo(*args, env):
    return subprocess.run([sys.executable, 'demo/demo.py', *args],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env=env)


def test_onnxruntime_demo_equals_torch(weights, small_photo, tmp_path):
    env = dict(os.environ, RAP_SAM_EXPORT_CACHE=str(tmp_path / 'cache'))
    common = [
        small_photo, COCO, '--weights', weights, '--scale', '96', '64',
        '--score-thr', '0.3'
    ]
    torch_run = run_demo(
        *common, '--out-dir', str(tmp_path / 'torch'), env=env)
    ort_run = run_demo(
        *common,
        '--out-dir',
        str(tmp_path / 'ort'),
        '--backend',
        'onnxruntime',
        '--threads',
        '2',
        env=env)
    for proc in (torch_run, ort_run):
        assert proc.returncode == 0, proc.stderr
        assert 'Traceback' not in proc.stderr
    ours = json.loads((tmp_path / 'ort' / 'coffee.json').read_text())
    ref = json.loads((tmp_path / 'torch' / 'coffee.json').read_text())
    assert ours['segments'], 'the seeded model finds segments'
    assert [s['category'] for s in ours['segments']
            ] == [s['category'] for s in ref['segments']]
    assert [s['segmentation'] for s in ours['segments']
            ] == [s['segmentation'] for s in ref['segments']]
    assert len(os.listdir(tmp_path / 'cache')) == 1  # one cached export


def test_int8_is_not_asked_of_the_demo(small_photo, tmp_path):
    proc = run_demo(
        small_photo,
        COCO,
        '--precision',
        'int8',
        '--out-dir',
        str(tmp_path / 'o'),
        env=dict(os.environ))
    assert_usage_error(proc, "invalid choice: 'int8'")
