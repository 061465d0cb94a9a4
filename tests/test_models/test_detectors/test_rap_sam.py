"""Every inference path of the model, on CPU with seeded random weights."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import build_model, image_batch, random_image, video_batch

from rap_sam.models.utils import clicks_to_boxes


@pytest.fixture(scope='module')
def model():
    return build_model('rap_sam/eval_rap_sam_coco.py')


@pytest.fixture(scope='module')
def video_model():
    return build_model('rap_sam/eval_rap_sam_yt19.py')


def test_tensor_mode_lists_stages_then_adapter(model):
    data = model.data_preprocessor(image_batch([random_image(70, 100)]))
    cls, masks, ious, queries = model(
        data['inputs'], data['data_samples'], mode='tensor')
    # Inputs are padded to 96 x 128; masks are at stride 4.
    assert len(cls) == len(masks) == len(ious) == 4
    assert all(c.shape == (1, 100, 134) for c in cls)
    assert all(m.shape == (1, 100, 24, 32) for m in masks)
    assert all(i.shape == (1, 100, 1) for i in ious)
    assert queries.shape == (1, 100, 256)
    # The adapter's IoU is the last stage's for object queries; the
    # adapter's classes are not divided by the temperature.
    assert torch.equal(ious[-1], ious[-2])
    assert not torch.allclose(cls[-1], cls[-2])


def test_image_gives_panoptic_and_instances(model):
    with torch.no_grad():
        out = model.test_step(image_batch([random_image(70, 100)]))[0]
    pan = out.pred_panoptic_seg.sem_seg
    assert pan.shape == (1, 70, 100)
    inst = out.pred_instances
    assert inst.masks.shape[1:] == (70, 100)
    assert 0 < len(inst) <= 100  # top max_per_image, then things only
    assert bool((inst.labels < 80).all())
    assert inst.bboxes.shape == (len(inst), 4)
    for seg in out.pred_panoptic_seg.segments:
        assert 0 <= seg['label'] < 133 and 0 < seg['score'] <= 1


def test_clicks_and_boxes_give_one_mask_each(model):
    img = random_image(64, 96, seed=1)
    clicks = torch.tensor([[10., 12.], [50., 40.]])
    prompts = torch.cat(
        [clicks_to_boxes(clicks),
         torch.tensor([[20., 5., 90., 60.]])])
    with torch.no_grad():
        out = model.test_step(image_batch([img], [prompts]))[0]
    inst = out.pred_instances
    assert inst.masks.shape == (3, 64, 96) and inst.masks.dtype == torch.bool
    assert inst.iou_scores.shape == (3, )
    assert inst.labels.shape == (3, ) and bool((inst.labels < 133).all())
    assert bool(((inst.scores > 0) & (inst.scores <= 1)).all())


def test_prompts_do_not_see_each_other(model):
    """A prompt's mask must not change when other prompts are added."""
    img = random_image(64, 96, seed=2)
    box = torch.tensor([[20., 5., 90., 60.]])
    others = torch.tensor([[0., 0., 30., 30.], [40., 10., 60., 50.]])
    with torch.no_grad():
        alone = model.test_step(image_batch([img], [box]))[0]
        crowd = model.test_step(
            image_batch([img], [torch.cat([others, box])]))[0]
    assert torch.equal(alone.pred_instances.masks[0],
                       crowd.pred_instances.masks[2])
    assert torch.allclose(
        alone.pred_instances.iou_scores[0],
        crowd.pred_instances.iou_scores[2],
        atol=1e-5)


def test_click_equals_its_six_pixel_box(model):
    img = random_image(64, 96, seed=3)
    x, y = 33.0, 21.0
    box = torch.tensor([[x - 3, y - 3, x + 3, y + 3]])
    with torch.no_grad():
        by_click = model.test_step(
            image_batch([img], [clicks_to_boxes(torch.tensor([[x, y]]))]))[0]
        by_box = model.test_step(image_batch([img], [box]))[0]
    assert torch.equal(by_click.pred_instances.masks,
                       by_box.pred_instances.masks)
    assert torch.equal(by_click.pred_instances.iou_scores,
                       by_box.pred_instances.iou_scores)


def test_video_clip_gives_tracks(model):
    frames = np.stack([random_image(64, 64, seed=s) for s in range(3)])
    with torch.no_grad():
        out = model.test_step(video_batch(frames))[0]
    assert len(out) == 3
    ids = [f.pred_track_instances.instances_id for f in out]
    labels = [f.pred_track_instances.labels for f in out]
    for frame in out:
        assert frame.pred_track_instances.masks.shape[1:] == (64, 64)
    # A track keeps its id and class through the clip.
    assert all(torch.equal(ids[0], i) for i in ids)
    assert all(torch.equal(labels[0], lab) for lab in labels)


def test_long_video_in_clips(video_model):
    frames = np.stack([random_image(64, 64, seed=s) for s in range(7)])
    with torch.no_grad():
        out = video_model.test_step(video_batch(frames))[0]
    assert len(out) == 7
    assert all(
        len(f.pred_track_instances) == len(out[0].pred_track_instances) > 0
        for f in out)
    assert all(f.pred_track_instances.labels.max() < 40 for f in out)


def test_video_of_one_clip_equals_clip_model(video_model):
    """With the whole video inside one clip, the clip logic is a no-op."""
    frames = np.stack([random_image(64, 64, seed=s) for s in range(3)])
    clip_model = copy.deepcopy(video_model)
    clip_model.__class__ = video_model.__class__.__mro__[1]  # RapSAM
    with torch.no_grad():
        whole = video_model.test_step(video_batch(frames))[0]
        clip = clip_model.test_step(video_batch(frames))[0]
    for a, b in zip(whole, clip):
        # COCO RLEs (the yt19 config's rle_masks), compared exactly.
        assert a.pred_track_instances.masks == b.pred_track_instances.masks
        assert torch.allclose(a.pred_track_instances.scores,
                              b.pred_track_instances.scores)


def test_non_rgb_image_is_refused(model):
    gray = np.zeros((32, 32, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match='3-channel'):
        model.test_step(image_batch([gray]))


def test_image_without_prompts_gives_empty_prediction(model):
    """COCO-SAM images can lose every segment in the resize."""
    with torch.no_grad():
        out = model.test_step(
            image_batch([random_image(40, 60)], [torch.zeros(0, 4)]))[0]
    assert out.pred_instances.masks.shape == (0, 40, 60)
    assert out.pred_instances.iou_scores.shape == (0, )


def test_rle_masks_decode_to_the_arrays(video_model):
    import pycocotools.mask as mask_util
    frames = np.stack([random_image(48, 64, seed=s) for s in range(2)])
    dense_model = copy.deepcopy(video_model)
    dense_model.test_cfg = dict(video_model.test_cfg, rle_masks=False)
    with torch.no_grad():
        rle = video_model.test_step(video_batch(frames))[0]
        dense = dense_model.test_step(video_batch(frames))[0]
    for a, b in zip(rle, dense):
        assert isinstance(a.pred_track_instances.masks, list)
        decoded = mask_util.decode(a.pred_track_instances.masks)
        assert np.array_equal(
            decoded.transpose(2, 0, 1), b.pred_track_instances.masks.numpy())


def test_logit_scale_multiplies_the_cosine_scores(model):
    """``logit_scale`` (log of the multiplier) sets the sharpness of every
    class score, stages and adapter alike; the released model's is log
    100."""
    from helpers import load_config
    from mmdet.registry import MODELS
    cfg = load_config('rap_sam/eval_rap_sam_coco.py')
    cfg.model.panoptic_head.logit_scale = float(np.log(10.))
    soft = MODELS.build(cfg.model)
    soft.load_state_dict(model.state_dict())
    soft.panoptic_head.classifier.fc_cls.copy_(
        model.panoptic_head.classifier.fc_cls)
    soft.eval()
    data = model.data_preprocessor(image_batch([random_image(64, 96)]))
    with torch.no_grad():
        sharp_cls = model(
            data['inputs'], data['data_samples'], mode='tensor')[0]
        soft_cls = soft(data['inputs'], data['data_samples'], mode='tensor')[0]
    assert len(sharp_cls) == 4  # three stages, then the adapter
    for sharp, soft_scores in zip(sharp_cls, soft_cls):
        torch.testing.assert_close(
            soft_scores * 10, sharp, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('prompts', [None, 1, 3])
def test_predict_head_equals_the_full_forward(model, prompts):
    """predict computes only the outputs it returns (no stage classes or
    IoUs nobody reads, no last-stage masks for prompts): they equal the
    full forward's."""
    img = random_image(64, 96, seed=4)
    boxes = None
    if prompts:
        boxes = [
            torch.tensor([[20., 5., 90., 60.], [3., 3., 9., 9.],
                          [40., 30., 46., 36.]])[:prompts]
        ]
    data = model.data_preprocessor(image_batch([img], boxes))
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        full = model.panoptic_head(feats, data['data_samples'])
        fast = model.predict_head(feats, data['data_samples'])
    for got, want in zip(fast,
                         (full[0][-1], full[1][-1], full[2][-1], full[3])):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_box_encoding_is_mmdets_of_the_box_centre_and_size(model):
    from mmdet.models.layers import coordinate_to_encoding
    from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
    head = model.panoptic_head
    g = torch.Generator().manual_seed(0)
    corners = torch.rand(2, 5, 2, 2, generator=g).sort(2).values
    boxes = corners.transpose(2, 3).flatten(2)  # x1 < x2, y1 < y2
    boxes[0, 0] = torch.tensor([0., 0., 1., 1.])  # clamped at both ends
    want = coordinate_to_encoding(
        bbox_xyxy_to_cxcywh(boxes).clamp(1e-5, 1 - 1e-5), num_feats=128)
    got = head.box_encoding(boxes)
    assert got.shape == (2, 5, 512)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize('ori_shape', [(64, 96), (100, 150)])
def test_prompt_masks_are_the_logits_upsampled_and_thresholded(
        model, ori_shape):
    """add_prompt_preds against the interpolations written out (the one to
    a size the mask already has is skipped: the same masks)."""
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 16, 32, generator=g)  # padded to 64 x 128
    meta = dict(
        batch_input_shape=(64, 128), img_shape=(64, 96), ori_shape=ori_shape)
    sample = DetDataSample(metainfo=meta)
    model.add_prompt_preds(
        torch.randn(1, 2, 134, generator=g), logits, torch.rand(1, 2, 1),
        [sample], True)
    up = F.interpolate(
        logits, size=(64, 128), mode='bilinear',
        align_corners=False)[:, :, :64, :96]
    want = F.interpolate(
        up, size=ori_shape, mode='bilinear', align_corners=False)[0] > 0
    got = sample.pred_instances.masks
    assert got.shape == (2, *ori_shape)
    assert torch.equal(got, want)
