"""The fusion head says which query each instance is, and makes the
instance result in two steps for videos (every query's masks per frame,
then the selection): equal to predict's, in every selection case."""
import pycocotools.mask as mask_util
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.mask import encode_mask_results

from rap_sam.models.seg_heads import ScoredPanopticFusionHead

# Padded 48 x 64 input, a 44 x 60 image, shown at 66 x 90.
META = dict(img_shape=(44, 60), ori_shape=(66, 90))
SIZE = (48, 64)


def head(things=8, stuff=0, max_per_image=20):
    return ScoredPanopticFusionHead(
        num_things_classes=things,
        num_stuff_classes=stuff,
        test_cfg=dict(
            panoptic_on=False,
            semantic_on=False,
            instance_on=True,
            max_per_image=max_per_image))


def outputs(queries, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(queries, classes + 1, generator=g) * 4
    masks = torch.randn(queries, 12, 16, generator=g) * 4
    return cls, masks


def predict(fusion, cls, masks):
    sample = dict(batch_input_shape=SIZE, **META)
    return fusion.predict(
        cls[None], masks[None], [DetDataSample(metainfo=sample)],
        rescale=True)[0]['ins_results']


def test_each_instance_names_its_query_and_class():
    fusion = head()
    cls, masks = outputs(10, 8)
    got = predict(fusion, cls, masks)
    assert len(got) == 20
    scores = F.softmax(cls, -1)[:, :-1]
    # Its score is its query's score of its class times its mask score ...
    mask_scores = fusion.predict_query_masks(masks, META, SIZE,
                                             True).mask_scores
    q = got.query_indices
    assert torch.equal(got.scores, scores[q, got.labels] * mask_scores[q])
    # ... and its mask its query's logits > 0 at the output size.
    for mask, q in zip(got.masks, got.query_indices.tolist()):
        logits = F.interpolate(
            masks[None, [q]], SIZE, mode='bilinear', align_corners=False)
        logits = F.interpolate(
            logits[:, :, :44, :60], (66, 90),
            mode='bilinear',
            align_corners=False)[0, 0]
        assert torch.equal(mask, logits > 0)


@pytest.mark.parametrize(
    'kwargs, queries, classes',
    [
        (dict(), 10, 8),  # many queries, several classes each
        (dict(max_per_image=1), 6, 8),  # a single pair
        (dict(max_per_image=3), 1, 8),  # one query, three classes
        (dict(things=3, stuff=2, max_per_image=4), 5, 5),  # stuff dropped
    ])
@pytest.mark.parametrize('vectorised', [False, True])
def test_query_masks_then_selection_is_predict(kwargs, queries, classes,
                                               vectorised):
    # vectorised: a GPU's layout, its RLEs encoded from run boundaries.
    fusion = head(**kwargs)
    fusion.vectorised = vectorised
    cls, masks = outputs(queries, classes, seed=queries)
    want = predict(fusion, cls, masks)
    query_masks = fusion.predict_query_masks(masks, META, SIZE, True)
    assert len(query_masks.masks) == queries
    got = fusion.gather_instances(fusion.select_instances(cls), query_masks)
    assert len(got) == len(want) > 0
    assert got.masks == encode_mask_results(want.masks.numpy())
    assert mask_util.decode(got.masks).shape == (66, 90, len(want))
    for key in ('bboxes', 'labels', 'scores', 'query_indices'):
        assert torch.equal(got.get(key), want.get(key)), key
    # Every row its own RLE: consumers decode an RLE's counts in place.
    assert len({id(m) for m in got.masks}) == len(got)
