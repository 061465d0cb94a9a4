"""The model against an independent re-derivation of RAP-SAM's forward
(tests/independent_rap_sam.py) on a real photo, with clicks and a box.

Tolerance: 1e-3 relative to each output's magnitude.
"""
import os
import os.path as osp

import cv2
import independent_rap_sam as independent
import pytest
import torch
from helpers import REPO, build_model, image_batch
from mmdet.models.seg_heads import MaskFormerFusionHead

from rap_sam.models.utils import clicks_to_boxes


def assert_close(actual, expected, what):
    scale = expected.abs().max().clamp(min=1e-6)
    err = (actual - expected).abs().max()
    assert err <= 1e-3 * scale, (
        f'{what}: max error {err:.3g}, scale {scale:.3g}')


@pytest.fixture(scope='module')
def setup():
    model = build_model('rap_sam/eval_rap_sam_coco.py', seed=4)
    # Random classes rarely pass 0.8: lower the bar so segments exist.
    model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.3
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    img = cv2.resize(img, (192, 128), interpolation=cv2.INTER_AREA)
    # The class embeddings straight from the file the config names.
    classes = torch.load(
        osp.join(os.environ['RAP_SAM_EMBD_DIR'],
                 'convnext_large_d_320_CocoPanopticOVDataset.pth'))
    return model, img, dict(model.state_dict()), classes


def compare(outputs, reference):
    for name, a_list, b_list in zip(('class scores', 'mask logits', 'ious'),
                                    outputs[:3], reference[:3]):
        assert len(a_list) == len(b_list) == 4
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            assert a.shape == b.shape, (name, i)
            assert_close(a, b, f'{name}[{i}]')


def test_panoptic_queries_match(setup):
    model, img, sd, classes = setup
    data = model.data_preprocessor(image_batch([img]))
    with torch.no_grad():
        ours = model(data['inputs'], data['data_samples'], mode='tensor')
        ref = independent.forward(data['inputs'], sd, classes)
    compare(ours, ref)


def test_clicks_and_box_match(setup):
    model, img, sd, classes = setup
    clicks = torch.tensor([[40., 30.], [150., 90.]])
    box = torch.tensor([[60., 20., 180., 110.]])
    prompts = torch.cat([clicks_to_boxes(clicks), box])
    data = model.data_preprocessor(image_batch([img], [prompts]))
    by_hand = torch.tensor([[37., 27., 43., 33.], [147., 87., 153., 93.],
                            [60., 20., 180., 110.]])
    with torch.no_grad():
        ours = model(data['inputs'], data['data_samples'], mode='tensor')
        ref = independent.forward(
            data['inputs'],
            sd,
            classes,
            boxes=by_hand[None],
            img_hw=(128, 192))
    compare(ours, ref)


def test_predict_gives_the_same_instances(setup):
    """model.predict against mmdet's own MaskFormer fusion applied to the
    independent outputs."""
    model, img, sd, classes = setup
    batch = image_batch([img])
    with torch.no_grad():
        result = model.test_step(batch)[0]
        data = model.data_preprocessor(image_batch([img]))
        cls, masks, _, _ = independent.forward(data['inputs'], sd, classes)
    fusion = MaskFormerFusionHead(
        num_things_classes=80,
        num_stuff_classes=53,
        test_cfg=dict(
            panoptic_on=True,
            instance_on=True,
            max_per_image=100,
            iou_thr=0.8,
            object_mask_thr=0.3,
            filter_low_score=True))
    sample = data['data_samples'][0]
    up = torch.nn.functional.interpolate(
        masks[-1],
        size=sample.batch_input_shape,
        mode='bilinear',
        align_corners=False)
    expected = fusion.predict(cls[-1], up, [sample], rescale=True)[0]

    ours, theirs = result.pred_instances, expected['ins_results']
    assert len(theirs) > 10 and theirs.masks.any()
    assert torch.equal(ours.labels, theirs.labels)
    assert_close(ours.scores, theirs.scores, 'instance scores')
    agree = (ours.masks == theirs.masks).float().mean()
    assert agree > 0.999, f'instance masks agree on {agree:.5f} of pixels'
    segments = torch.unique(expected['pan_results'].sem_seg)
    assert len(segments) > 1
    pan_agree = (result.pred_panoptic_seg.sem_seg ==
                 expected['pan_results'].sem_seg).float().mean()
    assert pan_agree > 0.999
