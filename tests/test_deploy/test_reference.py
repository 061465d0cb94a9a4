"""The reference post-processing: every mask upsampled to the padded input,
then mmdet's MaskFormerFusionHead unchanged; the segment table only on
request."""
import torch
import torch.nn.functional as F
from mmdet.models.seg_heads import MaskFormerFusionHead
from mmdet.structures import DetDataSample

from rap_sam.deploy import ReferenceFusionHead

TEST_CFG = dict(
    panoptic_on=True,
    semantic_on=False,
    instance_on=True,
    max_per_image=20,
    iou_thr=0.8,
    object_mask_thr=0.3,
    filter_low_score=True)


def outputs_and_sample():
    g = torch.Generator().manual_seed(1)
    cls = torch.randn(1, 12, 6, generator=g) * 6
    # Smooth blobs, mostly negative: segments of both kinds survive.
    masks = F.interpolate(
        torch.randn(1, 12, 3, 4, generator=g) * 6,
        size=(8, 12),
        mode='bilinear') - 7
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(30, 45),
            ori_shape=(60, 90),
            batch_input_shape=(32, 48),
            pad_shape=(32, 48),
            scale_factor=(1., 1.)))
    return cls, masks, sample


def test_is_mmdet_on_full_size_masks():
    cls, masks, sample = outputs_and_sample()
    mmdet_head = MaskFormerFusionHead(
        num_things_classes=3, num_stuff_classes=2, test_cfg=TEST_CFG)
    ref = ReferenceFusionHead.from_head(mmdet_head)
    assert ref.test_cfg == mmdet_head.test_cfg and ref.num_classes == 5
    full = F.interpolate(
        masks, size=(32, 48), mode='bilinear', align_corners=False)
    want = mmdet_head.predict(cls, full, [sample], rescale=True)[0]
    got = ref.predict(cls, masks, [sample], rescale=True)[0]
    assert torch.equal(got['pan_results'].sem_seg, want['pan_results'].sem_seg)
    assert got['pan_results'].sem_seg.shape[-2:] == (60, 90)
    for key in ('masks', 'labels', 'scores', 'bboxes'):
        assert torch.equal(got['ins_results'].get(key),
                           want['ins_results'].get(key))
    assert 'segments' not in got['pan_results'].metainfo


def test_segment_table_on_request():
    cls, masks, sample = outputs_and_sample()
    ref = ReferenceFusionHead(
        num_things_classes=3,
        num_stuff_classes=2,
        test_cfg=TEST_CFG,
        segments=True)
    pan = ref.predict(cls, masks, [sample], rescale=False)[0]['pan_results']
    ids, areas = torch.unique(pan.sem_seg, return_counts=True)
    painted = {
        i: a
        for i, a in zip(ids.tolist(), areas.tolist()) if i % 1000 != 5
    }
    assert len(painted) > 3
    assert {s['isthing'] for s in pan.segments} == {True, False}
    assert {s['id']: s['area'] for s in pan.segments} == painted
    for s in pan.segments:
        assert s['label'] == s['id'] % 1000
        assert s['isthing'] == (s['label'] < 3)
        assert 0.3 < s['score'] <= 1
