from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from mmdet.registry import DATASETS, METRICS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from rap_sam.evaluation import InteractiveMetric, ReferenceAveragingError
from rap_sam.testing import make_coco_panoptic

CONFIG = Path(__file__).parents[2] / 'configs/_base_/datasets/' \
    'coco_sam_prompt.py'


def rect(h, w, y1, y2, x1, x2):
    mask = np.zeros((h, w), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def sample(gt_masks, pred_masks, is_box=None, is_thing=None, skipped=0):
    """A data sample as the model returns it, in the evaluator's dict form."""
    num = len(gt_masks)
    h, w = gt_masks[0].shape
    data = DetDataSample(
        metainfo=dict(
            img_id=1,
            img_path='x.jpg',
            ori_shape=(h, w),
            num_skipped_prompts=skipped))
    data.gt_instances_collected = InstanceData(
        point_coords=torch.zeros(num, 4),
        pb_labels=torch.ones(num, dtype=torch.long),
        is_box=torch.tensor(is_box or [False] * num),
        is_thing=torch.tensor(is_thing or [True] * num),
        ori_masks=[
            mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            for m in gt_masks
        ])
    data.pred_instances = InstanceData(
        masks=torch.from_numpy(np.stack(pred_masks)),
        iou_scores=torch.ones(num))
    return data.to_dict()


def evaluate(samples, **kwargs):
    metric = InteractiveMetric(**kwargs)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


def test_perfect_prediction_on_toy_data(tmp_path):
    make_coco_panoptic(str(tmp_path), num_images=3, seed=2)
    cfg = Config.fromfile(str(CONFIG))
    cfg.test_dataloader.dataset.data_root = str(tmp_path)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    metric = METRICS.build(cfg.test_evaluator)
    assert isinstance(metric, InteractiveMetric)
    num_segments = 0
    for k in range(len(dataset)):
        data = dataset[k]['data_samples']
        prompts = data.gt_instances_collected
        masks = mask_utils.decode(prompts.ori_masks).transpose(2, 0, 1)
        data.pred_instances = InstanceData(
            masks=torch.from_numpy(masks.astype(bool)),
            iou_scores=torch.ones(len(masks)))
        metric.process({}, [data.to_dict()])
        num_segments += len(prompts)
    results = metric.evaluate(size=len(dataset))
    assert num_segments > len(dataset)  # one result per image, not per mask
    assert results['coco_sam/num_clicks'] == num_segments
    assert results['coco_sam/mIoU'] == 1.0
    assert results['coco_sam/mIoU_things'] == 1.0
    assert results['coco_sam/mIoU_stuff'] == 1.0
    for thr in (0.5, 0.8, 0.85, 0.9):
        assert results[f'coco_sam/NoC@{thr}'] == 1.0
    assert results['coco_sam/num_boxes'] == 0
    assert results['coco_sam/num_skipped'] == 0
    assert 'coco_sam/box_mIoU' not in results


def test_half_mask_is_iou_half():
    gt = rect(30, 40, 5, 15, 10, 30)  # 10 x 20
    half = rect(30, 40, 5, 15, 10, 20)  # its left half
    results = evaluate([sample([gt], [half])])
    assert results['coco_sam/mIoU'] == 0.5
    assert results['coco_sam/NoC@0.5'] == 1
    assert results['coco_sam/NoC@0.8'] == 20
    assert results['coco_sam/NoC@0.9'] == 20


def test_mixed_segments_and_images():
    gt_a, gt_b = rect(30, 40, 0, 10, 0, 10), rect(30, 40, 20, 30, 0, 40)
    # a: exact (1.0); b: 40 of 80 extra pixels -> 400 / 440
    pred_b = rect(30, 40, 19, 30, 0, 40)
    first = sample([gt_a, gt_b], [gt_a, pred_b], is_thing=[True, False])
    # c: empty prediction (0.0); shape of another image
    gt_c = rect(12, 12, 2, 6, 2, 6)
    second = sample([gt_c], [np.zeros((12, 12), bool)], skipped=2)
    results = evaluate([first, second])
    iou_b = 400 / 440
    assert results['coco_sam/num_clicks'] == 3
    assert results['coco_sam/num_skipped'] == 2
    assert results['coco_sam/mIoU'] == pytest.approx((1 + iou_b + 0) / 3)
    assert results['coco_sam/mIoU_things'] == pytest.approx(0.5)
    assert results['coco_sam/mIoU_stuff'] == pytest.approx(iou_b)
    assert results['coco_sam/NoC@0.85'] == pytest.approx((1 + 1 + 20) / 3)
    assert results['coco_sam/NoC@0.9'] == pytest.approx((1 + 1 + 20) / 3)
    assert results['coco_sam/NoC@0.5'] == pytest.approx((1 + 1 + 20) / 3)


def test_box_prompts_are_reported_apart():
    gt_a, gt_b = rect(20, 20, 0, 10, 0, 10), rect(20, 20, 10, 20, 0, 20)
    half_a = rect(20, 20, 0, 10, 0, 5)
    results = evaluate([
        sample([gt_a, gt_b], [half_a, gt_b],
               is_box=[True, False],
               is_thing=[True, False])
    ])
    assert results['coco_sam/box_mIoU'] == 0.5
    assert results['coco_sam/mIoU'] == 1.0
    assert results['coco_sam/num_boxes'] == 1
    assert results['coco_sam/num_clicks'] == 1
    assert 'coco_sam/mIoU_things' not in results


def test_float_predictions_are_thresholded():
    gt = rect(10, 10, 0, 5, 0, 10)
    prob = gt.astype(np.float32) * 0.9 + 0.05
    assert evaluate([sample([gt], [prob])])['coco_sam/mIoU'] == 1.0


def test_bad_predictions_are_reported():
    gt = rect(10, 10, 0, 5, 0, 10)
    too_many = sample([gt], [gt])
    too_many['pred_instances']['masks'] = torch.zeros(2, 10, 10, dtype=bool)
    with pytest.raises(
            ValueError, match=r'x\.jpg: 2 predicted masks for 1 prompts'):
        evaluate([too_many])
    with pytest.raises(
            ValueError,
            match=r'predicted masks are \(5, 10\), expected the '
            r'original image size \(10, 10\)'):
        evaluate([sample([gt], [gt[:5]])])


def reference_samples():
    """Three images: A has clicks of IoU 1 and 0.5 and a box (IoU 0.5),
    B one click of IoU 0, C one click of IoU 1."""
    gt_a, gt_b = rect(20, 20, 0, 10, 0, 10), rect(20, 20, 10, 20, 0, 20)
    half_b, half_a = rect(20, 20, 10, 20, 0, 10), rect(20, 20, 0, 10, 0, 5)
    gt_c = rect(12, 12, 2, 6, 2, 6)
    return [
        sample([gt_a, gt_b, gt_a], [gt_a, half_b, half_a],
               is_box=[False, False, True]),
        sample([gt_c], [np.zeros((12, 12), bool)]),
        sample([gt_c], [gt_c]),
    ]


@pytest.mark.parametrize(
    'num_processes, clicks',
    [
        # the first 3 clicks of A, B, C: 1, 0.5, 0
        (1, [1, 0.5, 0]),
        # rank 0 holds A, C: [1, .5, 1]; rank 1 B, A (padding): [0, 1, .5];
        # interleaved 1, 0, .5, 1, ... cut at 3
        (2, [1, 0, 0.5]),
        # one image per rank: 1, 0, 1
        (3, [1, 0, 1]),
    ])
def test_reference_averaging_known_answers(num_processes, clicks):
    results = evaluate(
        reference_samples(),
        reference_averaging=dict(num_processes=num_processes))
    # Ours is unchanged: all four clicks, the box apart.
    assert results['coco_sam/mIoU'] == pytest.approx(2.5 / 4)
    assert results['coco_sam/num_clicks'] == 4
    assert results['coco_sam/reference_num_clicks'] == 3
    assert results['coco_sam/reference_mIoU'] == pytest.approx(np.mean(clicks))
    assert results['coco_sam/reference_NoC@0.85'] == pytest.approx(
        np.mean([1 if c >= 0.85 else 20 for c in clicks]))


def test_reference_averaging_is_opt_in():
    results = evaluate(reference_samples())
    assert not [k for k in results if 'reference' in k]


@pytest.mark.parametrize('option', [
    dict(num_processes=0),
    dict(num_processes='8'),
    dict(processes=8),
    dict(num_processes=8, zip_longest_collect='yes'),
    8,
])
def test_reference_averaging_setting_is_checked(option):
    with pytest.raises(ReferenceAveragingError, match='num_processes=N'):
        InteractiveMetric(reference_averaging=option)


def test_reference_averaging_from_config():
    cfg = Config.fromfile(str(CONFIG))
    cfg.test_evaluator.reference_averaging = dict(num_processes=8)
    metric = METRICS.build(cfg.test_evaluator)
    assert metric.reference_averaging == dict(
        num_processes=8, zip_longest_collect=False)


def test_image_without_prompts():
    # e.g. every segment too small after the resize: no prompt, no mask
    empty = sample([rect(10, 10, 0, 5, 0, 10)], [rect(10, 10, 0, 5, 0, 10)])
    empty['gt_instances_collected']['ori_masks'] = []
    empty['gt_instances_collected']['is_box'] = torch.zeros(0, dtype=bool)
    empty['gt_instances_collected']['is_thing'] = torch.zeros(0, dtype=bool)
    empty['pred_instances']['masks'] = torch.zeros(0, 10, 10, dtype=bool)
    gt = rect(10, 10, 0, 5, 0, 10)
    results = evaluate([empty, sample([gt], [gt])],
                       reference_averaging=dict(num_processes=1))
    assert results['coco_sam/num_clicks'] == 1
    assert results['coco_sam/mIoU'] == 1.0
    assert results['coco_sam/reference_mIoU'] == 1.0
