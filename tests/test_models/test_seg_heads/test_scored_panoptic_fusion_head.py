"""ScoredPanopticFusionHead upsamples only the masks its post-processing
reads; its results must be exactly those of upsampling every mask and
running mmdet's MaskFormerFusionHead (plus the segment table), i.e. the
reference's post-processing (rap_sam.deploy.ReferenceFusionHead), pixel for
pixel and bit for bit."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample

from rap_sam.deploy import ReferenceFusionHead
from rap_sam.models.seg_heads import ScoredPanopticFusionHead


def heads(**test_cfg):
    cfg = dict(
        panoptic_on=True,
        semantic_on=False,
        instance_on=True,
        max_per_image=100,
        iou_thr=0.8,
        object_mask_thr=0.8,
        filter_low_score=True)
    cfg.update(test_cfg)
    kwargs = dict(num_things_classes=8, num_stuff_classes=5, test_cfg=cfg)
    return ScoredPanopticFusionHead(**kwargs), ReferenceFusionHead(
        segments=True, **kwargs)


def sample(img_shape, ori_shape, pad_shape):
    return DetDataSample(
        metainfo=dict(
            img_shape=img_shape,
            ori_shape=ori_shape,
            batch_input_shape=pad_shape,
            pad_shape=pad_shape,
            scale_factor=(1., 1.)))


def random_outputs(batch, queries, classes, h, w, seed, sharp=8.):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(batch, queries, classes + 1, generator=g) * sharp
    # Smooth blobs, so masks overlap and some queries lose their claims.
    masks = torch.randn(
        batch, queries, max(h // 4, 1), max(w // 4, 1), generator=g) * 6
    masks = F.interpolate(masks, size=(h, w), mode='bilinear') - 7
    return cls, masks


def assert_same(ours, theirs):
    assert ours.keys() == theirs.keys()
    if 'pan_results' in ours:
        a, b = ours['pan_results'], theirs['pan_results']
        assert torch.equal(a.sem_seg, b.sem_seg)
        assert a.segments == b.segments
    if 'ins_results' in ours:
        a, b = ours['ins_results'], theirs['ins_results']
        # Ours may also name each instance's query (mmdet does not).
        assert set(b.keys()) <= set(
            a.keys()) <= set(b.keys()) | {'query_indices'}
        for key in b.keys():
            if key == 'scores':
                # A mask score is a float sum over the mask's pixels, whose
                # order PyTorch's kernel picks by the tensor's row count
                # and the CPU's vector width: equal on AVX2, within an ulp
                # on AVX-512 (measured: 6e-8 at 0.77).
                torch.testing.assert_close(
                    a.scores, b.scores, rtol=1e-6, atol=1e-9)
            else:
                assert torch.equal(a.get(key), b.get(key)), key


CASES = [
    # img_shape, ori_shape, padded, mask size, rescale
    ((64, 96), (64, 96), (64, 96), (16, 24), True),
    ((60, 90), (120, 180), (64, 96), (16, 24), True),
    ((60, 90), (120, 180), (64, 96), (16, 24), False),
    ((57, 83), (113, 171), (64, 96), (16, 24), True),
    ((64, 96), (37, 55), (64, 96), (64, 96), True),
    ((61, 90), (61, 90), (64, 96), (16, 24), True),
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_same_as_upsampling_everything(case, seed):
    img_shape, ori_shape, pad, mask_hw, rescale = case
    ours, ref = heads(object_mask_thr=0.3)
    cls, masks = random_outputs(2, 30, 13, *mask_hw, seed)
    samples = [sample(img_shape, ori_shape, pad) for _ in range(2)]
    got = ours.predict(cls, masks, samples, rescale=rescale)
    want = ref.predict(cls, masks, samples, rescale=rescale)
    for a, b in zip(got, want):
        assert_same(a, b)
    # Not a vacuous comparison: segments of both kinds, instances.
    assert any(s['isthing'] for r in want for s in r['pan_results'].segments)
    assert len(want[0]['ins_results']) > 0


@pytest.mark.parametrize('test_cfg', [
    dict(panoptic_on=False),
    dict(instance_on=False),
    dict(filter_low_score=False),
    dict(object_mask_thr=0.99),
    dict(object_mask_thr=0.0, iou_thr=0.95),
    dict(max_per_image=7),
])
def test_same_for_other_settings(test_cfg):
    ours, ref = heads(**test_cfg)
    cls, masks = random_outputs(1, 20, 13, 20, 28, seed=3)
    samples = [sample((80, 112), (100, 140), (80, 112))]
    assert_same(
        ours.predict(cls, masks, samples, rescale=True)[0],
        ref.predict(cls, masks, samples, rescale=True)[0])


def test_one_query_behind_every_pair():
    """Every selected pair comes from one query: its mask is reduced once,
    as mmdet reduces one copy per pair (and a lone pair alone)."""
    for pairs in (8, 1):
        ours, ref = heads(object_mask_thr=0.3, max_per_image=pairs)
        cls = torch.full((1, 10, 14), -20.)
        cls[0, 4, :8] = 5. + torch.arange(8) * 0.01  # query 4: things
        _, masks = random_outputs(1, 10, 13, 200, 240, seed=5)
        samples = [sample((800, 960), (800, 960), (800, 960))]
        got = ours.predict(cls, masks, samples, rescale=True)[0]
        want = ref.predict(cls, masks, samples, rescale=True)[0]
        assert_same(got, want)
        assert len(want['ins_results']) == pairs


def test_fewer_pairs_than_max_per_image():
    """5 queries x 13 classes are 65 (query, class) pairs, under
    max_per_image (100): every pair is taken (mmdet's topk raises), the
    results mmdet's with max_per_image 65."""
    ours, _ = heads(max_per_image=100)
    _, ref = heads(max_per_image=65)
    cls, masks = random_outputs(1, 5, 13, 20, 28, seed=4)
    samples = [sample((80, 112), (80, 112), (80, 112))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, ref.predict(cls, masks, samples, rescale=True)[0])
    assert len(got['ins_results']) == 5 * 8  # the thing pairs


def test_nothing_kept():
    ours, ref = heads()
    g = torch.Generator().manual_seed(0)
    # Distinct scores (topk's choice among ties is not defined).
    cls = torch.randn(1, 10, 14, generator=g)
    cls[..., -1] = 30.  # background everywhere
    masks = torch.randn(1, 10, 8, 8, generator=g)
    samples = [sample((32, 32), (32, 32), (32, 32))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert got['pan_results'].segments == []


def test_model_predict_unchanged():
    """Through the model: the head's outputs fused by both heads."""
    import os.path as osp

    import cv2
    from helpers import REPO, build_model, image_batch
    model = build_model('rap_sam/eval_rap_sam_coco.py', seed=4)
    model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.3
    fusion = model.panoptic_fusion_head
    ref = ReferenceFusionHead.from_head(fusion, segments=True)
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    img = cv2.resize(img, (200, 120), interpolation=cv2.INTER_AREA)
    data = model.data_preprocessor(image_batch([img]))
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        cls, masks, _, _ = model.panoptic_head.predict(feats,
                                                       data['data_samples'])
    got = fusion.predict(cls, masks, data['data_samples'], rescale=True)
    want = ref.predict(cls, masks, data['data_samples'], rescale=True)
    assert_same(got[0], want[0])
    assert len(want[0]['pan_results'].segments) > 0


def test_entry_points_and_chunks():
    """mmdet's per-image post-processing methods, on full-size logits."""
    ours, ref = heads(object_mask_thr=0.3)
    cls, masks = random_outputs(1, 30, 13, 40, 56, seed=7)
    got = ours.panoptic_postprocess(cls[0], masks[0])
    want = ref.panoptic_postprocess(cls[0], masks[0])
    assert torch.equal(got.sem_seg, want.sem_seg)
    assert got.segments == want.segments and len(want.segments) > 0
    got = ours.instance_postprocess(cls[0], masks[0])
    want = ref.instance_postprocess(cls[0], masks[0])
    for key in want.keys():
        assert torch.equal(got.get(key), want.get(key)), key
    for n in range(1, 12):
        chunks = ours._chunks(list(range(n)), single=False)
        assert sum(chunks, []) == list(range(n))
        assert all(len(c) >= 2 for c in chunks) or n == 1
    assert ours._chunks([3, 5], single=True) == [[3], [5]]


@pytest.mark.parametrize('chunk_size', [2, 3, 8])
def test_many_queries_at_scale(chunk_size):
    """100 queries, a padded, cropped and rescaled image of real size, in
    chunks of any size."""
    ours, ref = heads(object_mask_thr=0.5)
    ours.chunk_size = chunk_size
    cls, masks = random_outputs(1, 100, 13, 100, 168, seed=11, sharp=6.)
    samples = [sample((397, 660), (530, 880), (416, 672))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert len(want['ins_results']) > 30


def test_boxes_are_mmdets_mask2bbox():
    """Boxes from the rows in use: empty masks, pixels on every border,
    masks in disjoint bands of rows, and no pixel at all."""
    from mmdet.structures.mask import mask2bbox
    masks = torch.zeros(7, 37, 53, dtype=torch.bool)
    masks[1, 0, 0] = True  # top left corner
    masks[2, 36, 52] = True  # bottom right corner
    masks[3] = True  # everything
    masks[4, 3:6, 10:40] = True  # a band at the top ...
    masks[5, 30:33, 2:9] = True  # ... and one at the bottom
    masks[6] = torch.rand(
        37, 53, generator=torch.Generator().manual_seed(0)) > 0.97
    boxes = ScoredPanopticFusionHead._boxes(masks)
    assert torch.equal(boxes, mask2bbox(masks))
    assert boxes[4].tolist() == [10, 3, 40, 6]
    assert boxes[0].tolist() == [0, 0, 0, 0]
    nothing = torch.zeros(3, 37, 53, dtype=torch.bool)
    assert torch.equal(
        ScoredPanopticFusionHead._boxes(nothing), torch.zeros(3, 4))
    assert torch.equal(
        ScoredPanopticFusionHead._boxes(masks[4:6]), mask2bbox(masks[4:6]))


def test_panoptic_areas_counted_on_large_images(monkeypatch):
    """Above 2^24 pixels a float sum of 1.0s is no longer an exact count:
    the areas are counted as bools there, with the same result."""
    from rap_sam.models.seg_heads import scored_panoptic_fusion_head as mod
    ours, ref = heads(object_mask_thr=0.3)
    cls, masks = random_outputs(1, 30, 13, 16, 24, seed=2)
    samples = [sample((60, 90), (120, 180), (64, 96))]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    counted = []
    count = mod._Claims._count

    def spy(self, ones):
        counted.append(self.exact_float_count)
        return count(self, ones)

    monkeypatch.setattr(mod._Claims, '_count', spy)
    for threshold in (2**24, 0):
        monkeypatch.setattr(mod._Claims, 'exact_float_count', threshold)
        got = ours.predict(cls, masks, samples, rescale=True)[0]
        assert_same(got, want)
    assert set(counted) == {2**24, 0}
    assert len(want['pan_results'].segments) > 0


def test_chunk_of_three_resized_as_alone():
    """Three masks on one thread would take PyTorch's image kernel (other
    last bits than mmdet's resize of all queries): each mask's resize is
    the one it gets alone."""
    head = ScoredPanopticFusionHead(
        num_things_classes=3, num_stuff_classes=2, test_cfg=dict())
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(3, 40, 64, generator=g) * 5
    meta = dict(img_shape=(150, 250), ori_shape=(333, 250))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = head._resize(masks, (160, 256), meta, True)
        alone = [
            head._resize(masks[[i]], (160, 256), meta, True)[0]
            for i in range(3)
        ]
        plain = F.interpolate(
            masks[None], size=(160, 256), mode='bilinear')[0, :, :150, :250]
    finally:
        torch.set_num_threads(threads)
    for i in range(3):
        assert torch.equal(got[i], alone[i])
    # Not vacuous: PyTorch's call on the three differs.
    assert not torch.equal(
        plain,
        torch.stack([
            F.interpolate(masks[None, [i]], size=(160, 256),
                          mode='bilinear')[0, 0, :150, :250] for i in range(3)
        ]))


@pytest.mark.parametrize('case', CASES[1:4])
def test_vectorised_layout_is_the_same(case):
    """The layout for GPUs (chunks of device_chunk_size queries, one max
    per chunk for the claims, one indexed copy of the instance masks),
    run here on the CPU: the same results, in several chunks or one."""
    img_shape, ori_shape, pad, mask_hw, rescale = case
    for chunk in (32, 7):
        ours, ref = heads(object_mask_thr=0.3)
        ours.vectorised, ours.device_chunk_size = True, chunk
        cls, masks = random_outputs(1, 60, 13, *mask_hw, seed=chunk)
        samples = [sample(img_shape, ori_shape, pad)]
        got = ours.predict(cls, masks, samples, rescale=rescale)[0]
        want = ref.predict(cls, masks, samples, rescale=rescale)[0]
        assert_same(got, want)
        assert len(want['pan_results'].segments) > 1
        assert len(want['ins_results']) > 10
        assert ours._chunks(list(range(60)), False, True) == [
            list(range(i, min(i + chunk, 60))) for i in range(0, 60, chunk)
        ]


def test_vectorised_is_chosen_by_device():
    ours, _ = heads()
    assert not ours._vectorised_on(torch.device('cpu'))
    assert ours._vectorised_on(torch.device('cuda'))
    ours.vectorised = False
    assert not ours._vectorised_on(torch.device('cuda'))


@pytest.mark.parametrize('chunk', [32, 3])
def test_vectorised_ties_go_to_the_lower_query(chunk):
    """Pairs of queries with the same scores and saturated masks (sigmoid
    exactly 1.0 over shared pixels) tie: argmax gives those pixels to the
    lower query, in one chunk or across chunks."""
    ours, ref = heads(object_mask_thr=0.3)
    ours.vectorised, ours.device_chunk_size = True, chunk
    cls, masks = random_outputs(1, 24, 13, 16, 24, seed=9)
    cls[:, 1::2] = cls[:, ::2]
    masks = masks * 40  # |logits| > 17: sigmoid 1.0 or 0.0
    masks[:, 1::2] = masks[:, ::2].roll(2, dims=-1)  # overlapping
    samples = [sample((64, 96), (64, 96), (64, 96))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert len(want['pan_results'].segments) > 0
