"""A decoder stage's inference shortcuts compute what the full stage does:
a query that may attend to itself only (isolated), and outputs left out."""
import copy

import pytest
import torch

from rap_sam.models.layers import DecoderStage, LowRankFeatureMap
from rap_sam.models.utils import cast_autocast_weights


def _stage(seed: int = 0) -> DecoderStage:
    torch.manual_seed(seed)
    stage = DecoderStage(channels=32, cls_embed_dims=48, ffn_channels=64)
    with torch.no_grad():
        for p in stage.parameters():
            p.normal_(std=0.2)  # biases too: the query / key biases must go
    return stage.eval()


def _inputs(num_queries: int):
    g = torch.Generator().manual_seed(num_queries)
    features = torch.randn(1, 32, 6, 7, generator=g)
    queries = torch.randn(1, num_queries, 32, generator=g)
    masks = torch.randn(1, num_queries, 6, 7, generator=g)
    return features, queries, masks


@pytest.mark.parametrize('num_queries', [1, 3])
def test_isolated_queries_equal_attention_blocked_by_a_mask(num_queries):
    stage = _stage()
    features, queries, masks = _inputs(num_queries)
    # Every query blocked from every other one: the prompts' mask.
    blocked = ~torch.eye(num_queries, dtype=torch.bool)
    with torch.no_grad():
        want = stage(features, queries, masks, blocked)
        got = stage(features, queries, masks, None, isolated=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Without the mask the queries do see each other (the test can fail).
    with torch.no_grad():
        unmasked = stage(features, queries, masks)[3]
    if num_queries > 1:
        assert not torch.allclose(unmasked, want[3], atol=1e-3)


def test_outputs_left_out_are_none_and_the_rest_unchanged():
    stage = _stage(1)
    features, queries, masks = _inputs(2)
    with torch.no_grad():
        cls, logits, ious, out = stage(features, queries, masks)
        for kwargs in (dict(with_cls=False), dict(with_iou=False),
                       dict(with_masks=False),
                       dict(with_masks=False, with_iou=False)):
            part = stage(features, queries, masks, **kwargs)
            names = ('with_cls', 'with_masks', 'with_iou', 'queries')
            for name, got, want in zip(names, part, (cls, logits, ious, out)):
                if kwargs.get(name, True):
                    assert torch.equal(got, want), (kwargs, name)
                else:
                    assert got is None, (kwargs, name)
    assert cls.shape == (1, 2, 48) and ious.shape == (1, 2, 1)


def test_isolated_in_training_has_the_same_gradients():
    stage = _stage(2).train()
    features, queries, masks = _inputs(3)
    blocked = ~torch.eye(3, dtype=torch.bool)
    grads = []
    for kwargs in (dict(self_attn_mask=blocked), dict(isolated=True)):
        stage.zero_grad()
        cls, logits, ious, out = stage(features, queries, masks, **kwargs)
        (cls.sum() + logits.sum() + ious.sum() + out.sum()).backward()
        grads.append(stage.s_atten.in_proj_weight.grad.clone())
    # The query and key rows get no gradient from a softmax over one key.
    c = 32
    assert torch.count_nonzero(grads[1][:2 * c]) == 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('low_rank', [False, True])
def test_fp16_pools_sums_past_its_range(low_rank):
    """Pooled features are sums over a mask's pixels (about 2e5 here, past
    fp16's largest value, 65504): under fp16 autocast the pooling and the
    kernel update run in fp32, their weights kept fp32, so the outputs
    stay finite and near fp32's."""
    stage = _stage()
    g = torch.Generator().manual_seed(1)
    channels = 30 if low_rank else 32
    basis = torch.randn(1, channels, 120, 160, generator=g) + 10
    queries = torch.randn(1, 3, 32, generator=g)
    masks = torch.ones(1, 3, 120, 160)  # every pixel under every mask
    weight = torch.randn(32, 32, generator=g) * 0.1

    def features(dtype):
        if not low_rank:
            return basis.to(dtype)
        return LowRankFeatureMap(
            basis.to(dtype), weight.to(dtype), torch.zeros(32, dtype=dtype))

    half = copy.deepcopy(stage)
    cast_autocast_weights(half, torch.float16)
    assert half.kernel_update.dynamic_layer.weight.dtype == torch.float32
    assert half.fc_mask.weight.dtype == torch.float16
    with torch.no_grad():
        want = stage(features(torch.float32), queries, masks)
        with torch.autocast('cpu', dtype=torch.float16):
            got = half(features(torch.float16), queries, masks)
    for ours, theirs in zip(got, want):
        ours = ours.float()
        assert torch.isfinite(ours).all()
        err = (ours - theirs).abs().max() / theirs.abs().max()
        assert err < 2e-2
