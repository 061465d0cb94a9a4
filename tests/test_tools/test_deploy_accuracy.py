"""tools/analysis/deploy_accuracy.py as a user runs it: the toy
architecture with seeded weights, int8 on ONNX Runtime against fp32, on a
photo and on a tiny COCO panoptic val set (PQ and click mIoU)."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import cv2
import pytest
import torch
from helpers import REPO, randomize_
from mmdet.registry import MODELS

from rap_sam.testing import make_coco_panoptic
from rap_sam.utils.config_file import read_config

TOOL = 'tools/analysis/deploy_accuracy.py'
CONFIG = 'configs/rap_sam/toy_eval_coco.py'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A seeded toy checkpoint, its class embeddings, a 2-image COCO
    panoptic val set and a calibration folder."""
    root = tmp_path_factory.mktemp('toy')
    spec = importlib.util.spec_from_file_location(
        'toy_train_eval', osp.join(REPO, 'tools', 'toy_train_eval.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.write_toy_class_embeddings(str(root / 'embd'))
    make_coco_panoptic(str(root / 'coco'), num_images=2)
    cfg = read_config(osp.join(REPO, CONFIG))
    cfg.model.panoptic_head.ov_classifier_dir = str(root / 'embd')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomize_(model, 0)
    torch.save({'state_dict': model.state_dict()}, root / 'toy.pth')
    calib = root / 'calib'
    calib.mkdir()
    photo = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    for i, size in enumerate([(120, 80), (80, 120)]):
        cv2.imwrite(str(calib / f'{i}.jpg'), cv2.resize(photo, size))
    cv2.imwrite(str(root / 'photo.jpg'), cv2.resize(photo, (150, 100)))
    return root


def _run(args):
    return subprocess.run(
        [sys.executable, TOOL] + args,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600)


def test_int8_against_fp32_on_photo_and_test_sets(toy):
    coco = toy / 'coco'
    proc = _run([
        CONFIG, '--checkpoint',
        str(toy / 'toy.pth'), '--calib',
        str(toy / 'calib'), '--modes', 'onnxruntime:int8', '--threads', '1',
        '--photos',
        str(toy / 'photo.jpg'), '--eval-configs', CONFIG,
        'configs/rap_sam/toy_eval_prompt.py', '--work-dir',
        str(toy / 'work'), '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={toy / "embd"}',
        f'test_dataloader.dataset.data_root={coco}/',
        f'test_evaluator.seg_prefix={coco}/annotations/panoptic_val2017/'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    assert '| onnxruntime:int8 | 1 |' in proc.stdout
    report = json.load(open(toy / 'work' / 'deploy_accuracy.json'))
    assert report['scale'] == [128, 128]
    entry = report['modes']['onnxruntime:int8']
    summary = entry['photo_summary']
    assert summary['photos'] == 1
    for key in ('segments', 'instances'):
        assert 0 <= summary[key]['kept'] <= summary[key]['ref']
        assert 0 <= summary[key]['min_iou'] <= summary[key]['mean_iou'] <= 1
    assert 0.5 < summary['panoptic_agreement'] <= 1
    assert 0.5 < summary['click_mean_iou'] <= 1
    coco_metrics = entry['datasets']['toy_eval_coco.py']
    prompt_metrics = entry['datasets']['toy_eval_prompt.py']
    for metrics in (coco_metrics, prompt_metrics):
        assert set(metrics) == {'fp32', 'mode'}
    assert 0 <= coco_metrics['mode']['coco_panoptic/PQ'] <= 100
    assert 0 <= prompt_metrics['mode']['coco_sam/mIoU'] <= 1
    # Two clicks per val image at least: both evaluations saw the images.
    assert prompt_metrics['fp32']['coco_sam/num_clicks'] >= 2
    # The fp32 export is left beside the int8 one.
    assert osp.isfile(toy / 'work' / 'fp32' / 'image_encoder.onnx')
    assert osp.isfile(toy / 'work' / 'int8' / 'image_encoder.onnx')


@pytest.mark.parametrize('case', ['no_calib', 'empty_calib', 'bad_mode'])
def test_bad_input_is_one_line(toy, tmp_path, case):
    args = [
        CONFIG, '--checkpoint',
        str(toy / 'toy.pth'), '--work-dir',
        str(tmp_path / 'work')
    ]
    if case == 'empty_calib':
        args += ['--calib', str(tmp_path)]
    if case == 'bad_mode':
        args += ['--calib', str(toy / 'calib'), '--modes', 'torch:int8']
    proc = _run(args)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ')
    assert {
        'no_calib': 'needs calibration images',
        'empty_calib': 'No images in the calibration folder',
        'bad_mode': 'int8 runs on onnxruntime or openvino',
    }[case] in last
    assert not osp.exists(tmp_path / 'work')  # failed before any export
