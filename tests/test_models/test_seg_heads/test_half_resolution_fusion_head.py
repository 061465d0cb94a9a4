"""HalfResolutionFusionHead, the approximate post-processing: the exact
head's result structure (fields, dtypes, shapes), values near the exact
ones on outputs with known answers, and its own 2x2 repeat, boxes and
areas exact for what it computes at half size."""
import math

import pytest
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample

from rap_sam.deploy.accuracy import (match_instances, panoptic_class_agreement,
                                     panoptic_segments)
from rap_sam.models.seg_heads import (HalfResolutionFusionHead,
                                      ScoredPanopticFusionHead)
from rap_sam.models.seg_heads.half_resolution_fusion_head import _repeated
from rap_sam.testing.fusion_outputs import object_like_outputs

THINGS, STUFF = 3, 2
NUM_CLASSES = THINGS + STUFF


def heads(**test_cfg):
    cfg = dict(panoptic_on=True, instance_on=True, max_per_image=10)
    cfg.update(test_cfg)
    kwargs = dict(
        num_things_classes=THINGS, num_stuff_classes=STUFF, test_cfg=cfg)
    return ScoredPanopticFusionHead(**kwargs), HalfResolutionFusionHead(
        **kwargs)


def sample(size, img_shape=None, ori_shape=None):
    img_shape = img_shape or size
    return DetDataSample(
        metainfo=dict(
            batch_input_shape=size,
            pad_shape=size,
            img_shape=img_shape,
            ori_shape=ori_shape or img_shape))


def disk_outputs(size=(128, 192), center=(50., 80.), radius=30.):
    """One confident thing query whose mask logits (at a quarter of
    ``size``) are a signed distance to a disk, in pixels of ``size``
    (positive inside), and three empty, unsure queries."""
    h, w = size[0] // 4, size[1] // 4
    # Logit pixel centres in input pixels.
    ys = (torch.arange(h, dtype=torch.float32) + 0.5)[:, None] * 4
    xs = (torch.arange(w, dtype=torch.float32) + 0.5)[None] * 4
    dist = radius - torch.sqrt((ys - center[0])**2 + (xs - center[1])**2)
    masks = torch.full((4, h, w), -20.)
    masks[0] = dist / 4
    cls = torch.full((4, NUM_CLASSES + 1), -5.)
    cls[:, -1] = 5.
    cls[0, 1], cls[0, -1] = 10., -5.
    return cls[None], masks[None]


def small_outputs(seed):
    """Seeded object-like outputs of 12 queries at 32x48 (for a 128x192
    input): 4 confident, 3 empty."""
    return object_like_outputs((32, 48),
                               num_things_classes=THINGS,
                               num_stuff_classes=STUFF,
                               num_queries=12,
                               num_confident=4,
                               num_empty=3,
                               seed=seed)


def run(head, cls, masks, meta):
    return head.predict(cls, masks, [meta], rescale=True)[0]


def assert_same_structure(ours, theirs):
    assert set(ours) == set(theirs)
    pa, pb = ours['pan_results'], theirs['pan_results']
    assert set(pa.keys()) == set(pb.keys())
    assert pa.sem_seg.shape == pb.sem_seg.shape
    assert pa.sem_seg.dtype == pb.sem_seg.dtype
    assert [sorted(s) for s in pa.segments] == \
        [sorted(s) for s in pb.segments]
    ia, ib = ours['ins_results'], theirs['ins_results']
    assert set(ia.keys()) == set(ib.keys())
    for key in ib.keys():
        assert ia.get(key).shape == ib.get(key).shape, key
        assert ia.get(key).dtype == ib.get(key).dtype, key
    assert ia.masks.is_contiguous() and pa.sem_seg.is_contiguous()
    assert torch.equal(ia.labels, ib.labels)
    assert torch.equal(ia.query_indices, ib.query_indices)


def assert_same_results(got, want):
    """The same masks, panoptic map, segments and boxes; scores to float
    rounding."""
    assert torch.equal(got['pan_results'].sem_seg, want['pan_results'].sem_seg)
    assert got['pan_results'].segments == want['pan_results'].segments
    assert torch.equal(got['ins_results'].masks, want['ins_results'].masks)
    assert torch.equal(got['ins_results'].bboxes, want['ins_results'].bboxes)
    torch.testing.assert_close(got['ins_results'].scores,
                               want['ins_results'].scores)


@pytest.mark.parametrize(
    'img_shape,ori_shape',
    [
        (None, None),
        (None, (97, 161)),
        (None, (200, 301)),
        # An odd image size resized up, as a photo is: the half-size crop
        # must not stretch the mask.
        ((85, 128), (427, 640)),
        ((85, 127), (85, 127)),
    ])
def test_disk_mask_close_to_exact(img_shape, ori_shape):
    size = (128, 192)
    exact, half = heads()
    cls, masks = disk_outputs(size)
    meta = sample(size, img_shape=img_shape, ori_shape=ori_shape)
    want, got = run(exact, cls, masks, meta), run(half, cls, masks, meta)
    assert_same_structure(got, want)
    img_h, img_w = img_shape or size
    h, w = ori_shape or (img_h, img_w)
    scale = (h / img_h) * (w / img_w)
    disk = math.pi * 30.**2 * scale
    top = int(want['ins_results'].scores.argmax())
    mask_e = want['ins_results'].masks[top]
    mask_h = got['ins_results'].masks[top]
    assert abs(int(mask_e.sum()) - disk) / disk < 0.03
    assert abs(int(mask_h.sum()) - int(mask_e.sum())) / disk < 0.03
    inter = (mask_e & mask_h).sum().item()
    union = (mask_e | mask_h).sum().item()
    assert inter / union > 0.95
    # Boxes within a pixel or two of the exact ones; scores near them.
    assert (got['ins_results'].bboxes -
            want['ins_results'].bboxes).abs().max() <= 2
    torch.testing.assert_close(
        got['ins_results'].scores,
        want['ins_results'].scores,
        atol=2e-3,
        rtol=0)
    # One panoptic segment, the disk, with about the same area and the
    # same score; nearly every pixel keeps its panoptic class.
    seg_e, = want['pan_results'].segments
    seg_h, = got['pan_results'].segments
    assert seg_h['id'] == seg_e['id'] == 1 + INSTANCE_OFFSET
    assert seg_h['score'] == seg_e['score']
    assert abs(seg_h['area'] - seg_e['area']) / seg_e['area'] < 0.03
    assert panoptic_class_agreement(want['pan_results'].sem_seg,
                                    got['pan_results'].sem_seg) > 0.99


def test_repeated_results_are_consistent():
    """The instance masks and panoptic map are the half-size ones repeated
    2x2 (cropped at an odd size); boxes are the masks' tight boxes and
    segment areas their pixels."""
    size = (128, 192)
    cls, masks = small_outputs(seed=1)
    exact, half = heads(object_mask_thr=0.5)
    meta = sample(size, ori_shape=(101, 151))
    got = run(half, cls, masks, meta)
    pan = got['pan_results'].sem_seg[0]
    assert pan.shape == (101, 151)
    ins = got['ins_results']
    assert ins.masks.shape[1:] == (101, 151) and len(ins) > 0
    for m in list(ins.masks) + [pan]:
        # 2x2 blocks: every even row/column equals the next one.
        assert torch.equal(m[0:100:2], m[1:101:2])
        assert torch.equal(m[:, 0:150:2], m[:, 1:151:2])
    assert torch.equal(ins.bboxes, ScoredPanopticFusionHead._boxes(ins.masks))
    segments = got['pan_results'].segments
    assert segments
    for s in segments:
        assert s['area'] == int((pan == s['id']).sum())
    want = run(exact, cls, masks, meta)
    assert_same_structure(got, want)


def test_close_to_exact_on_object_like_outputs():
    """Seeded object-like outputs at 256x384: every exact instance with a
    non-empty mask is found (IoU >= 0.5, same label) with a mean mask IoU
    above 0.9, every panoptic segment too, and nearly every pixel keeps
    its class."""
    size = (256, 384)
    cls, masks = object_like_outputs((64, 96), seed=0)
    kwargs = dict(
        num_things_classes=80,
        num_stuff_classes=53,
        test_cfg=dict(panoptic_on=True, instance_on=True))
    exact = ScoredPanopticFusionHead(**kwargs)
    half = HalfResolutionFusionHead(**kwargs)
    meta = sample(size)
    want, got = run(exact, cls, masks, meta), run(half, cls, masks, meta)
    ins_e = want['ins_results']
    nonempty = ins_e.masks.flatten(1).any(1)
    assert nonempty.sum() > 10
    found = match_instances(ins_e[nonempty], got['ins_results'])
    assert found['kept'] == found['ref']
    assert found['mean_iou'] > 0.9
    segments = match_instances(
        panoptic_segments(want['pan_results'].sem_seg[0], 133),
        panoptic_segments(got['pan_results'].sem_seg[0], 133))
    assert segments['ref'] > 0 and segments['kept'] == segments['ref']
    assert panoptic_class_agreement(want['pan_results'].sem_seg[0],
                                    got['pan_results'].sem_seg[0]) > 0.99


def test_repeat_2x2_known_answer():
    src = torch.tensor([[1, 0, 7], [0, 3, 2]], dtype=torch.int32)
    want = src.repeat_interleave(2, 0).repeat_interleave(2, 1)
    for shape in [(4, 6), (3, 6), (4, 5), (3, 5)]:
        out = torch.full(shape, -1, dtype=torch.int32)
        HalfResolutionFusionHead._repeat_2x2(src, out, {})
        assert torch.equal(out, want[:shape[0], :shape[1]]), shape
    bools = src > 0
    # Into a window of a larger tensor (strided rows), as the masks are.
    big = torch.zeros((6, 10), dtype=torch.bool)
    HalfResolutionFusionHead._repeat_2x2(bools, big[2:6, 2:8], {})
    expected = torch.zeros((6, 10), dtype=torch.bool)
    expected[2:6, 2:8] = want > 0
    assert torch.equal(big, expected)


def test_empty_results_keep_their_shapes():
    size = (64, 96)
    exact, half = heads()
    cls = torch.full((1, 3, NUM_CLASSES + 1), -5.)
    cls[..., -1] = 5.
    masks = torch.full((1, 3, 16, 24), -10.)
    meta = sample(size, ori_shape=(63, 95))
    want, got = run(exact, cls, masks, meta), run(half, cls, masks, meta)
    assert_same_structure(got, want)
    assert not got['ins_results'].masks.any()
    assert torch.equal(got['pan_results'].sem_seg, want['pan_results'].sem_seg)


def test_threads_give_the_same_results_and_are_set_back():
    """With several threads the chunks run on one-core workers and the
    rest on one thread: the same masks and panoptic map as on one thread,
    scores to float rounding, and the caller's thread count back."""
    size = (128, 192)
    cls, masks = small_outputs(seed=2)
    _, half = heads(object_mask_thr=0.5)
    meta = sample(size, ori_shape=(101, 151))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(half, cls, masks, meta)
        torch.set_num_threads(2)
        two = run(half, cls, masks, meta)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert_same_results(two, one)


@pytest.mark.parametrize('ori_shape', [None, (101, 151), (200, 301), (63, 95)])
def test_vectorised_layout_gives_the_same_results(ori_shape):
    """The GPU layout (masks and panoptic map repeated whole, the exact
    head's chunks of queries), run on the CPU: the same masks, map,
    segments and boxes as the CPU layout, scores to float rounding."""
    size = (128, 192)
    cls, masks = small_outputs(seed=3)
    _, cpu_layout = heads(object_mask_thr=0.5)
    _, gpu_layout = heads(object_mask_thr=0.5)
    gpu_layout.vectorised = True
    meta = sample(size, ori_shape=ori_shape)
    want = run(cpu_layout, cls, masks, meta)
    got = run(gpu_layout, cls, masks, meta)
    assert len(got['ins_results']) > 0 and got['pan_results'].segments
    assert_same_structure(got, want)
    assert_same_results(got, want)


def test_repeated_known_answer():
    src = torch.tensor([[[1, 0, 7], [0, 3, 2]]], dtype=torch.int32)
    want = src.repeat_interleave(2, 1).repeat_interleave(2, 2)
    for h, w in [(4, 6), (3, 6), (4, 5), (3, 5)]:
        out = _repeated(src, h, w)
        assert out.is_contiguous()
        assert torch.equal(out, want[:, :h, :w]), (h, w)
