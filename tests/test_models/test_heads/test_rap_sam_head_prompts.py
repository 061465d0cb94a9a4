"""A click decoded on cached features: the fused inference path (stages
called as functions, the map's pixel table) gives the module-by-module
path's outputs."""
import copy

import pytest
import torch
from helpers import build_model, image_batch

from rap_sam.deploy import prepare
from rap_sam.models.layers import DecoderStage, LowRankFeatureMap


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


@pytest.mark.parametrize('count', [1, 3])
def test_fused_prompt_decode_is_the_module_path(clicked, count, monkeypatch):
    model, feats, samples = clicked
    samples = _samples(samples, count)
    head = model.panoptic_head
    calls = []
    real = DecoderStage.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DecoderStage, 'forward', counted)
    with torch.no_grad():
        fused = head.predict(feats, samples)
        assert not calls  # the fused path ran
        monkeypatch.setattr(head, 'fuse_isolated_prompts', False)
        modules = head.predict(feats, samples)
        assert len(calls) == 3
        # And the path before the pixel table too.
        before = head.predict(_plain(feats), samples)
    assert fused[1].shape == (1, count, 24, 32)
    for a, b in zip(fused, modules):
        assert torch.equal(a, b)
    for a, b in zip(fused, before):
        assert rel_err(a, b) < 1e-5
    # Masks equal but for logits within rounding of zero.
    flipped = (fused[1] > 0) != (before[1] > 0)
    assert (before[1][flipped].abs() < 1e-4 * before[1].abs().max()).all()


def test_clicks_predicted_through_the_fused_path(clicked, monkeypatch):
    """The whole click (post-processing included) as before: the same
    masks but for ties, IoU scores and classes to 1e-5."""
    model, feats, samples = clicked
    with torch.no_grad():
        got = model.predict_from_feats(feats, copy.deepcopy(samples))[0]
        monkeypatch.setattr(model.panoptic_head, 'fuse_isolated_prompts',
                            False)
        want = model.predict_from_feats(_plain(feats),
                                        copy.deepcopy(samples))[0]
    got, want = got.pred_instances, want.pred_instances
    assert got.masks.shape == want.masks.shape == (3, 96, 128)
    assert (got.masks != want.masks).float().mean() < 1e-3
    torch.testing.assert_close(
        got.iou_scores, want.iou_scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.labels, want.labels)


def test_training_runs_the_modules(clicked, monkeypatch):
    """Training (and all_stages=True) keeps the module-by-module path."""
    model, feats, samples = clicked
    head = model.panoptic_head

    def fail(*args, **kwargs):
        raise AssertionError('fused path taken')

    monkeypatch.setattr(head, '_predict_isolated_prompts', fail)
    with torch.no_grad():
        outputs = head(feats, _samples(samples, 1), all_stages=True)
    assert len(outputs[1]) == 4  # three stages and the adapter
