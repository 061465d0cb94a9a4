"""A click decoded on cached features: the stages run as modules (the one
implementation training runs too) and the map's products with its few
vectors go through the pixel table, whose outputs are the plain path's to
float rounding; training never takes the table."""
import copy

import pytest
import torch
from helpers import build_model, image_batch

from rap_sam.deploy import prepare
from rap_sam.models.layers import DecoderStage, LowRankFeatureMap
from rap_sam.ops.pixel_products import MAX_VECTORS


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope='module')
def clicked():
    """A fast model, one image's cached features and its samples."""
    model = prepare(
        build_model('rap_sam/eval_rap_sam_coco.py', seed=7), 'fast')
    g = torch.Generator().manual_seed(2)
    img = torch.randint(
        0, 256, (96, 128, 3), generator=g, dtype=torch.uint8).numpy()
    boxes = torch.tensor([[40., 30., 46., 36.], [5., 8., 90., 70.],
                          [100., 60., 106., 66.]])
    batch = image_batch([img], prompts=[boxes])
    data = model.data_preprocessor(copy.deepcopy(batch))
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
    assert isinstance(feats, LowRankFeatureMap)
    return model, feats, data['data_samples']


def _samples(samples, count):
    samples = copy.deepcopy(samples)
    samples[0].gt_instances_collected = \
        samples[0].gt_instances_collected[:count]
    return samples


def _plain(feats):
    plain = LowRankFeatureMap(feats.basis, feats.weight, feats.bias)
    plain.use_pixel_table = False
    return plain


def _spy(monkeypatch):
    """Records each stage call and each map's choice of the pixel table."""
    stages, tables = [], []
    real_forward, real_use = DecoderStage.forward, \
        LowRankFeatureMap._use_table

    def forward(self, *args, **kwargs):
        stages.append(kwargs.get('isolated'))
        return real_forward(self, *args, **kwargs)

    def use_table(self, num_vectors):
        tables.append(real_use(self, num_vectors))
        return tables[-1]

    monkeypatch.setattr(DecoderStage, 'forward', forward)
    monkeypatch.setattr(LowRankFeatureMap, '_use_table', use_table)
    return stages, tables


@pytest.mark.parametrize('count', [1, 3])
def test_prompt_decode_on_the_pixel_table_is_the_plain_path(
        clicked, count, monkeypatch):
    model, feats, samples = clicked
    samples = _samples(samples, count)
    head = model.panoptic_head
    stages, tables = _spy(monkeypatch)
    with torch.no_grad():
        got = head.predict(feats, samples)
        # Three stages as modules, each query attending to itself only.
        assert stages == [True] * 3
        # On the table: the first mask, two stages' sums and masks, the
        # last stage's sum, then the adapter's attention (a vector per head
        # and prompt: one fused pass where the table takes that few, else a
        # product and a sum on the basis) and its mask.
        heads = head.prompt_attn.attn.num_heads
        adapter = [True] if count * heads <= MAX_VECTORS else [False] * 3
        assert tables == [True] * 6 + adapter + [True]
        stages.clear(), tables.clear()
        want = head.predict(_plain(feats), samples)
        assert stages == [True] * 3
        assert tables and not any(tables)
    assert got[1].shape == (1, count, 24, 32)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-5
    # Not the same floats: the table sums in another order.
    assert not torch.equal(got[1], want[1])
    # Masks equal but for logits within rounding of zero.
    flipped = (got[1] > 0) != (want[1] > 0)
    assert (want[1][flipped].abs() < 1e-4 * want[1].abs().max()).all()


def test_clicks_predicted_on_the_pixel_table(clicked):
    """The whole click (post-processing included) as on the plain map: the
    same masks but for ties, IoU scores and classes to 1e-5."""
    model, feats, samples = clicked
    with torch.no_grad():
        got = model.predict_from_feats(feats, copy.deepcopy(samples))[0]
        want = model.predict_from_feats(_plain(feats),
                                        copy.deepcopy(samples))[0]
    got, want = got.pred_instances, want.pred_instances
    assert got.masks.shape == want.masks.shape == (3, 96, 128)
    assert (got.masks != want.masks).float().mean() < 1e-3
    torch.testing.assert_close(
        got.iou_scores, want.iou_scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.labels, want.labels)


def test_training_keeps_its_numerics(clicked, monkeypatch):
    """With gradients (training) the map never takes the pixel table: the
    prompt decode is the plain path's, bit for bit, outputs and
    gradients."""
    model, feats, samples = clicked
    head = model.panoptic_head
    samples = _samples(samples, 3)
    stages, tables = _spy(monkeypatch)
    results = []
    head.train()
    try:
        for use_table in (True, False):
            basis = feats.basis.detach().clone().requires_grad_()
            features = LowRankFeatureMap(basis, feats.weight, feats.bias)
            features.use_pixel_table = use_table
            head.zero_grad()
            torch.manual_seed(0)
            cls, masks, ious, queries = head(features, samples)
            assert len(masks) == 4  # three stages and the adapter
            total = sum(x.sum() for x in cls + masks + ious) + queries.sum()
            total.backward()
            results.append(
                [x.detach() for x in cls + masks + ious] +
                [basis.grad, head.mask_heads[0].fc_mask.weight.grad])
    finally:
        head.eval()
    assert stages == [True] * 6
    assert tables and not any(tables)
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert results[0][-1].abs().sum() > 0
