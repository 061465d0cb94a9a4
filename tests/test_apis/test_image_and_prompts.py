"""segment_image, set_image and predict_prompts against the model's own
test_step, on a batch built here independently of the API."""
import mmcv
import numpy as np
import pytest
import torch
from helpers import config_path
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from rap_sam.apis import InputError, RapSAMPredictor, read_image
from rap_sam.models.utils import clicks_to_boxes

COCO = config_path('rap_sam/eval_rap_sam_coco.py')


def reference_batch(img, scale, prompt_boxes=None):
    """A test_step batch of ``img`` resized to fit ``scale`` keep-ratio,
    with prompt boxes given at the resized scale."""
    resized = mmcv.imrescale(img, scale)
    h, w = resized.shape[:2]
    sample = DetDataSample(
        metainfo=dict(
            img_id=0,
            img_shape=(h, w),
            ori_shape=img.shape[:2],
            scale_factor=(w / img.shape[1], h / img.shape[0])))
    if prompt_boxes is not None:
        sample.gt_instances_collected = InstanceData(
            point_coords=prompt_boxes,
            pb_labels=torch.ones(len(prompt_boxes), dtype=torch.long))
    inputs = torch.from_numpy(resized).permute(2, 0, 1).contiguous()
    return dict(inputs=[inputs], data_samples=[sample])


def test_segment_image_matches_test_step(predictor, photo):
    result = predictor.segment_image(photo)
    with torch.no_grad():
        expected = predictor.model.test_step(
            reference_batch(photo, predictor.scale))[0]
    assert result.pred_panoptic_seg.sem_seg.shape == (1, 100, 150)
    assert result.pred_panoptic_seg.segments, 'compare non-empty results'
    assert torch.equal(result.pred_panoptic_seg.sem_seg,
                       expected.pred_panoptic_seg.sem_seg)
    assert result.pred_panoptic_seg.segments == \
        expected.pred_panoptic_seg.segments
    assert torch.equal(result.pred_instances.masks,
                       expected.pred_instances.masks)
    assert torch.equal(result.pred_instances.labels,
                       expected.pred_instances.labels)


def test_images_are_read_from_files(photo, tmp_path):
    path = str(tmp_path / 'photo.png')
    mmcv.imwrite(photo, path)
    assert np.array_equal(read_image(path), photo)


def test_prompts_match_test_step(predictor, photo):
    """Prompts in original pixels are scaled to the resized image: a click
    becomes the 6-px box around the scaled point."""
    points = [[40.0, 30.0], [120.0, 80.0]]
    boxes = [[10.0, 20.0, 140.0, 90.0]]
    predictor.set_image(photo)
    result = predictor.predict_prompts(points=points, boxes=boxes)

    sx, sy = 96 / 150, 64 / 100
    scaled = torch.cat([
        clicks_to_boxes(torch.tensor(points) * torch.tensor([sx, sy])),
        torch.tensor(boxes) * torch.tensor([sx, sy, sx, sy])
    ])
    with torch.no_grad():
        expected = predictor.model.test_step(
            reference_batch(photo, predictor.scale, scaled))[0]
    got, want = result.pred_instances, expected.pred_instances
    assert got.masks.shape == (3, 100, 150) and got.masks.dtype == torch.bool
    assert torch.equal(got.masks, want.masks)
    assert torch.allclose(got.iou_scores, want.iou_scores, atol=1e-5)
    assert torch.equal(got.labels, want.labels)
    assert torch.allclose(got.scores, want.scores, atol=1e-5)
    assert got.masks.any()  # the comparison is not between empty masks


def test_prompts_reuse_the_image_features(predictor, photo):
    calls = []
    hook = predictor.model.backbone.register_forward_pre_hook(
        lambda *_: calls.append(1))
    try:
        predictor.set_image(photo)
        assert len(calls) == 1
        first = predictor.predict_prompts(points=[[40, 30]])
        predictor.predict_prompts(points=[[40, 30], [100, 50]])
        again = predictor.predict_prompts(points=[[40, 30]])
        predictor.predict_prompts(boxes=[[0, 0, 50, 50]])
    finally:
        hook.remove()
    assert len(calls) == 1
    assert torch.equal(first.pred_instances.masks, again.pred_instances.masks)


def test_a_new_image_replaces_the_features(predictor, photo):
    predictor.set_image(photo)
    assert predictor.image_size == (150, 100)
    predictor.set_image(photo[:50, :60])
    assert predictor.image_size == (60, 50)
    result = predictor.predict_prompts(points=[[59, 49]])
    assert result.pred_instances.masks.shape == (1, 50, 60)


@pytest.mark.parametrize('points, boxes, message', [
    (None, None, 'No prompt'),
    ([], [], 'No prompt'),
    ([[151, 10]], None, r'point \(151, 10\) is outside the image, which is '
     '150 x 100'),
    ([[10, -1]], None, 'outside the image'),
    (None, [[50, 50, 20, 80]], 'x2 > x1'),
    (None, [[200, 150, 300, 300]], 'box .* is outside the image'),
    ([[1, 2, 3]], None, r'must be \[N, 2\]'),
    ([['a', 'b']], None, 'must be numbers'),
    ([[float('nan'), 3]], None, 'non-finite'),
])
def test_bad_prompts_are_explained(predictor, photo, points, boxes, message):
    predictor.set_image(photo)
    with pytest.raises(InputError, match=message):
        predictor.predict_prompts(points=points, boxes=boxes)


def test_boxes_are_clipped_to_the_image(predictor, photo):
    predictor.set_image(photo)
    clipped = predictor.predict_prompts(boxes=[[-20, -20, 200, 150]])
    inside = predictor.predict_prompts(boxes=[[0, 0, 150, 100]])
    assert torch.equal(clipped.pred_instances.masks,
                       inside.pred_instances.masks)


def test_prompts_need_an_image(weights):
    fresh = RapSAMPredictor(COCO, weights, 'cpu', scale=(64, 64))
    with pytest.raises(InputError, match='call set_image'):
        fresh.predict_prompts(points=[[1, 1]])


@pytest.mark.parametrize('make, message', [
    (lambda d: str(d / 'missing.jpg'), 'Image not found'),
    (lambda d: str(d), 'is a folder, not an image file'),
    (lambda d: _write(d / 'notes.jpg', b'not an image'), 'Cannot read'),
    (lambda d: _write(d / 'empty.png', b''), 'Cannot read'),
    (lambda d: np.zeros((4, 4, 2), np.uint8), r'has shape \(4, 4, 2\)'),
    (lambda d: np.zeros((0, 4, 3), np.uint8), 'empty'),
    (lambda d: None, 'No image'),
])
def test_bad_images_are_explained(predictor, tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        predictor.segment_image(make(tmp_path))
    with pytest.raises(InputError, match=message):
        predictor.set_image(make(tmp_path))


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def test_grayscale_and_rgba_arrays_are_accepted(predictor, photo):
    rgba = np.concatenate([photo, np.full_like(photo[..., :1], 255)], -1)
    assert np.array_equal(read_image(rgba), photo)
    gray = read_image(photo[..., 0])
    assert gray.shape == (100, 150, 3)
    assert np.array_equal(gray[..., 2], photo[..., 0])
    result = predictor.segment_image(photo[..., 0])
    assert result.pred_panoptic_seg.sem_seg.shape == (1, 100, 150)


def test_optimized_predictor_agrees_with_the_plain_model(
        predictor, photo, weights):
    """The predictor runs the model with the exact inference optimisations
    (low-rank neck output among them) unless told not to."""
    plain = RapSAMPredictor(
        COCO, weights, 'cpu', scale=(96, 64), optimize=False)
    assert predictor.model.neck.low_rank_output
    assert not plain.model.neck.low_rank_output
    points = [[40.0, 30.0], [120.0, 80.0]]
    results = []
    for p in (predictor, plain):
        p.set_image(photo)
        results.append(p.predict_prompts(points=points).pred_instances)
    fast, ref = results
    assert (fast.masks == ref.masks).float().mean() > 0.999
    assert torch.allclose(fast.iou_scores, ref.iou_scores, atol=1e-4)


def test_float_and_uint16_images_give_the_uint8_result(predictor, photo):
    """A float image in [0, 1] is scaled by 255 (it was clipped to near
    black), a uint16 one keeps its high byte (it saturated)."""
    expected = predictor.segment_image(photo).pred_panoptic_seg.sem_seg
    for same in (photo / 255., photo.astype(np.float32),
                 photo.astype(np.uint16) << 8):
        result = predictor.segment_image(same).pred_panoptic_seg.sem_seg
        assert torch.equal(result, expected)


def test_prompts_in_batches_give_the_results_of_one_batch(predictor, photo):
    """Prompts never attend to each other, so any batch size gives the
    masks of decoding all prompts together, and their scores to float
    rounding (matrix products of another size sum in another order)."""
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [150, 100], (7, 2))
    corners = rng.uniform([0, 0], [100, 60], (4, 2))
    boxes = np.concatenate([corners, corners + [40, 30]], axis=1)
    predictor.set_image(photo)
    whole = predictor.predict_prompts(points, boxes, batch_size=64)
    assert whole.pred_instances.masks.shape == (11, 100, 150)
    assert whole.pred_instances.masks.any()
    for size in (1, 3):
        part = predictor.predict_prompts(points, boxes, batch_size=size)
        got, want = part.pred_instances, whole.pred_instances
        assert torch.equal(got.masks, want.masks)
        assert torch.equal(got.labels, want.labels)
        assert torch.allclose(got.scores, want.scores, rtol=0, atol=1e-4)
        assert torch.allclose(
            got.iou_scores, want.iou_scores, rtol=0, atol=1e-4)
        assert len(part.gt_instances_collected) == 11
    with pytest.raises(InputError, match='batch_size must be a whole'):
        predictor.predict_prompts(points, boxes, batch_size='8')


def test_prompt_forms_that_are_guesses_are_refused(predictor, photo):
    predictor.set_image(photo)
    flat = predictor.predict_prompts(points=[40, 30])
    rows = predictor.predict_prompts(points=[[40, 30]])
    assert torch.equal(flat.pred_instances.masks, rows.pred_instances.masks)
    with pytest.raises(InputError, match=r'\[N, 2\] rows'):
        predictor.predict_prompts(points=[40, 30, 60, 50])
    with pytest.raises(InputError, match='booleans'):
        predictor.predict_prompts(points=np.ones((2, 2), bool))


def test_images_above_the_pixel_limit_are_refused(predictor, photo, tmp_path,
                                                  monkeypatch):
    path = str(tmp_path / 'photo.png')
    mmcv.imwrite(photo, path)
    monkeypatch.setattr(predictor, 'max_pixels', 150 * 100 - 1)
    for source in (photo, path):
        with pytest.raises(
                InputError, match='150 x 100 pixels .* above the '
                'limit'):
            predictor.segment_image(source)
        with pytest.raises(InputError, match='above the limit'):
            predictor.set_image(source)
    monkeypatch.setattr(predictor, 'max_pixels', 150 * 100)
    assert predictor.read_image(path).shape == (100, 150, 3)


def test_too_thin_images_are_explained(predictor):
    """A 1 x 5000 image would resize to 96 x 0 (cv2.error before)."""
    with pytest.raises(
            InputError,
            match='5000 x 1 pixels, too thin to '
            'resize to fit 96 x 64'):
        predictor.segment_image(np.zeros((1, 5000, 3), np.uint8))
    with pytest.raises(InputError, match='too thin'):
        predictor.set_image(np.zeros((5000, 1), np.uint8))
    # As thin as still resizes: it runs.
    result = predictor.segment_image(np.zeros((2, 150, 3), np.uint8))
    assert result.pred_panoptic_seg.sem_seg.shape == (1, 2, 150)


def test_prompt_batches_shrink_on_large_images(predictor, photo, monkeypatch):
    """A batch's float masks at the original size are bounded: on an image
    of PROMPT_BATCH_PIXELS / 2 pixels, two prompts go at a time."""
    import rap_sam.apis.predictor as module
    predictor.set_image(photo)
    points = [[10 * i + 5, 50] for i in range(5)]
    whole = predictor.predict_prompts(points)
    calls = []
    decode = predictor.model.predict_from_feats
    monkeypatch.setattr(predictor.model, 'predict_from_feats',
                        lambda *a: calls.append(1) or decode(*a))
    monkeypatch.setattr(module, 'PROMPT_BATCH_PIXELS', 2 * 150 * 100 + 1)
    part = predictor.predict_prompts(points)
    assert len(calls) == 3  # 2 + 2 + 1
    assert torch.equal(part.pred_instances.masks, whole.pred_instances.masks)
