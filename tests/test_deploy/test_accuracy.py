"""Known answers for the agreement measures of rap_sam.deploy.accuracy."""
import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmengine.structures import InstanceData

from rap_sam.deploy.accuracy import (check_inputs, dataset_table, grid_clicks,
                                     mask_iou_matrix, match_instances,
                                     panoptic_class_agreement,
                                     panoptic_segments, parse_cfg_options,
                                     parse_modes, photo_table,
                                     summarize_photos)
from rap_sam.utils.user_errors import UserError


def _masks():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, :5] = True  # top half: 50 pixels
    masks[1, 5:] = True  # bottom half
    masks[2, :, :3] = True  # left 3 columns: 30 pixels
    return masks


def test_mask_iou_matrix():
    masks = _masks()
    ious = mask_iou_matrix(masks, masks)
    np.testing.assert_allclose(np.diag(ious), 1.0)
    assert ious[0, 1] == 0
    # top half and left columns: 15 shared of 50 + 30 - 15.
    np.testing.assert_allclose(ious[0, 2], 15 / 65, rtol=1e-6)
    empty = torch.zeros(1, 10, 10, dtype=torch.bool)
    assert mask_iou_matrix(empty, empty)[0, 0] == 0


def test_match_instances_one_to_one_by_iou_and_label():
    masks = _masks()
    ref = InstanceData(masks=masks, labels=torch.tensor([1, 2, 3]))
    # The first two swapped, one pixel row shaved off the bottom half; the
    # third missing.
    test_masks = masks[[1, 0]].clone()
    test_masks[0, 9] = False
    test = InstanceData(masks=test_masks, labels=torch.tensor([2, 1]))
    result = match_instances(ref, test)
    assert (result['ref'], result['test'], result['kept']) == (3, 2, 2)
    np.testing.assert_allclose(result['mean_iou'], 0.9, rtol=1e-6)
    np.testing.assert_allclose(result['min_iou'], 0.8, rtol=1e-6)
    # A changed label is not kept, whatever the overlap.
    test.labels = torch.tensor([2, 7])
    assert match_instances(ref, test)['kept'] == 1
    # Below the IoU threshold: not kept.
    assert match_instances(ref, test, iou_thr=0.85)['kept'] == 0
    none = InstanceData(
        masks=masks[:0], labels=torch.zeros(0, dtype=torch.long))
    assert match_instances(ref, none)['kept'] == 0


def test_panoptic_class_agreement_ignores_instance_ids():
    ref = torch.tensor([[1 + 1 * INSTANCE_OFFSET, 2, 3, 4]])
    test = torch.tensor([[1 + 2 * INSTANCE_OFFSET, 2, 5, 4]])
    assert panoptic_class_agreement(ref, test) == 0.75


def test_panoptic_segments():
    void = 5
    pan = torch.tensor([[1 + 1 * INSTANCE_OFFSET, 1 + 2 * INSTANCE_OFFSET],
                        [3, void]])
    segments = panoptic_segments(pan, num_classes=void)
    assert segments.labels.tolist() == [3, 1, 1]
    assert segments.masks.flatten(1).tolist() == [[0, 0, 1, 0], [1, 0, 0, 0],
                                                  [0, 1, 0, 0]]
    assert len(panoptic_segments(torch.full((2, 2), void), void)) == 0


def test_grid_clicks_and_summary():
    np.testing.assert_allclose(
        grid_clicks(100, 50, 2),
        [[25, 12.5], [75, 12.5], [25, 37.5], [75, 37.5]])
    matches = [
        dict(ref=4, test=4, kept=3, mean_iou=0.9, min_iou=0.8),
        dict(ref=2, test=1, kept=1, mean_iou=0.5, min_iou=0.5),
    ]
    rows = [
        dict(
            segments=matches[0],
            instances=matches[1],
            panoptic_agreement=0.9,
            click_mean_iou=0.95,
            click_min_iou=0.7),
        dict(
            segments=matches[1],
            instances=matches[1],
            panoptic_agreement=0.7,
            click_mean_iou=0.85,
            click_min_iou=0.6),
    ]
    summary = summarize_photos(rows)
    segments = summary['segments']
    assert segments['kept'] == 4 and segments['ref'] == 6
    np.testing.assert_allclose(segments['kept_fraction'], 4 / 6)
    # Matched IoU averaged per matched instance, not per photo.
    np.testing.assert_allclose(segments['mean_iou'], (3 * 0.9 + 0.5) / 4)
    assert segments['min_iou'] == 0.5 and summary['click_min_iou'] == 0.6
    assert summary['instances']['kept'] == 2
    np.testing.assert_allclose(summary['panoptic_agreement'], 0.8)
    table = photo_table([dict(mode='onnxruntime:int8', **summary)])
    assert '| onnxruntime:int8 | 2 | 4 / 6 (66.7 %) | 0.8000 / 0.5000 |' \
        in table


def test_parse_modes_and_options():
    assert parse_modes(['onnxruntime:int8',
                        'torch:bf16']) == [('onnxruntime', 'int8'),
                                           ('torch', 'bf16')]
    # An approximate post-processing, alone (fp32) or with a precision;
    # the exact one is the plain precision.
    assert parse_modes(
        ['torch:fp32:half', 'openvino:int8:half',
         'torch:bf16:exact']) == [('torch', 'fp32:half'),
                                  ('openvino', 'int8:half'), ('torch', 'bf16')]
    # OpenVINO's bf16 float operations on the int8 export.
    assert parse_modes(['openvino:int8-bf16', 'openvino:int8-bf16:half'
                        ]) == [('openvino', 'int8-bf16'),
                               ('openvino', 'int8-bf16:half')]
    for bad, message in [('torch:int8', 'int8 runs on an int8 export'),
                         ('torch:int8:half', 'int8 runs on an int8 export'),
                         ('torch:int8-bf16', 'int8-bf16 runs on an int8'),
                         ('onnxruntime:int8-bf16',
                          'onnxruntime runs fp32, int8, not int8-bf16'),
                         ('onnxruntime:bf16',
                          'onnxruntime runs fp32, int8, not bf16'),
                         ('onnxruntime', 'BACKEND:PRECISION'),
                         ('tensorrt:int8', 'BACKEND:PRECISION'),
                         ('openvino:fp32', 'what each mode is compared with'),
                         ('torch:fp32:exact', 'what each mode is compared'),
                         ('torch:fp32:quarter', 'post half'),
                         ('torch:bf16:half:x', 'BACKEND:PRECISION')]:
        with pytest.raises(UserError, match=message) as err:
            parse_modes([bad])
        assert '\n' not in str(err.value)
    assert parse_cfg_options(['a.b=1', 'c=[1,2]', 'd=x']) == {
        'a.b': 1,
        'c': [1, 2],
        'd': 'x'
    }


def test_dataset_table_known_answer():
    metrics = {
        ('onnxruntime', 'fp32', 'coco.py'): {
            'coco_panoptic/PQ': 53.17,
            'other': 1.0
        },
        ('onnxruntime', 'int8', 'coco.py'): {
            'coco_panoptic/PQ': 51.52
        },
        ('onnxruntime', 'fp32', 'prompt.py'): {
            'coco_sam/mIoU': 0.82031
        },
    }
    assert dataset_table(metrics).splitlines() == [
        '| eval config | metric | onnxruntime:fp32 | onnxruntime:int8 |',
        '|---|---|---|---|',
        '| coco.py | coco_panoptic/PQ | 53.17 | 51.52 |',
        '| prompt.py | coco_sam/mIoU | 0.8203 |  |',
    ]


def test_post_modes_in_tables_and_input_checks():
    """A post-processing mode is a column of its own, and an int8 one
    still needs calibration images before the export."""
    metrics = {
        ('torch', 'fp32', 'coco.py'): {
            'coco_panoptic/PQ': 46.87
        },
        ('torch', 'fp32:half', 'coco.py'): {
            'coco_panoptic/PQ': 46.5
        },
    }
    assert dataset_table(metrics).splitlines()[0] == (
        '| eval config | metric | torch:fp32 | torch:fp32:half |')
    check_inputs(parse_modes(['torch:fp32:half']), None)
    with pytest.raises(UserError) as err:
        check_inputs(parse_modes(['openvino:int8:half']), None)
    assert 'calib' in str(err.value).lower()
