"""The factored prompt cross-attention equals mmcv's MultiheadAttention
over the projected pixels."""
import pytest
import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention

from rap_sam.models.layers.prompt_attention import attend_to_feature_map


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('num_queries', [1, 3, 31, 40])
@pytest.mark.parametrize('batch', [1, 2])
def test_matches_projected_attention(num_queries, batch):
    torch.manual_seed(num_queries + batch)
    attn = MultiheadAttention(
        embed_dims=256, num_heads=8, batch_first=True).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(std=0.1)  # biases too: the key bias must cancel
    queries = torch.randn(batch, num_queries, 256)
    features = torch.randn(batch, 256, 12, 17)
    keys = features.flatten(2).transpose(1, 2)
    with torch.no_grad():
        expected = attn(queries, keys)
        actual = attend_to_feature_map(attn, queries, features)
    assert actual.shape == expected.shape
    assert rel_err(actual, expected) < 1e-5


def test_channels_last_features():
    attn = MultiheadAttention(
        embed_dims=64, num_heads=8, batch_first=True).eval()
    queries = torch.randn(1, 2, 64)
    features = torch.randn(1, 64, 9, 11)
    with torch.no_grad():
        a = attend_to_feature_map(attn, queries, features)
        b = attend_to_feature_map(
            attn, queries,
            features.contiguous(memory_format=torch.channels_last))
    assert rel_err(b, a) < 1e-6
