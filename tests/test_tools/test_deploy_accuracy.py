"""tools/analysis/deploy_accuracy.py as a user runs it: the toy
architecture with seeded weights, int8 on ONNX Runtime against fp32, on a
photo and on a tiny COCO panoptic val set (PQ and click mIoU)."""
import json
import os.path as osp

import cv2
import pytest
from helpers import (REPO, assert_ran, assert_user_error, run_script,
                     toy_checkpoint)

from rap_sam.testing import make_coco_panoptic

TOOL = 'tools/analysis/deploy_accuracy.py'
TOY = 'rap_sam/toy_eval_coco.py'
CONFIG = f'configs/{TOY}'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A seeded toy checkpoint, its class embeddings, a 2-image COCO
    panoptic val set and a calibration folder."""
    root = tmp_path_factory.mktemp('toy')
    toy_checkpoint(root, TOY)
    make_coco_panoptic(str(root / 'coco'), num_images=2)
    calib = root / 'calib'
    calib.mkdir()
    photo = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    for i, size in enumerate([(120, 80), (80, 120)]):
        cv2.imwrite(str(calib / f'{i}.jpg'), cv2.resize(photo, size))
    cv2.imwrite(str(root / 'photo.jpg'), cv2.resize(photo, (150, 100)))
    return root


def test_int8_against_fp32_on_photo_and_test_sets(toy):
    coco = toy / 'coco'
    proc = run_script(
        TOOL, CONFIG, '--checkpoint', str(toy / 'toy.pth'), '--calib',
        str(toy / 'calib'), '--modes', 'onnxruntime:int8', '--threads', '1',
        '--photos', str(toy / 'photo.jpg'), '--eval-configs',
        CONFIG, 'configs/rap_sam/toy_eval_prompt.py', '--work-dir',
        str(toy / 'work'), '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={toy / "embd"}',
        f'test_dataloader.dataset.data_root={coco}/',
        f'test_evaluator.seg_prefix={coco}/annotations/panoptic_val2017/')
    assert_ran(proc)
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
    assert_user_error(
        run_script(TOOL, *args), {
            'no_calib': 'needs calibration images',
            'empty_calib': 'No images in the calibration folder',
            'bad_mode': 'int8 runs on onnxruntime or openvino',
        }[case])
    assert not osp.exists(tmp_path / 'work')  # failed before any export
