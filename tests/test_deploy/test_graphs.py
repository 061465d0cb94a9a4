"""The export graphs' restatements of the head's products equal the
originals: the map as pixel rows (:class:`PixelRowsFeatureMap`) against
the dense map and :class:`LowRankFeatureMap`, and the free-length
:class:`SelfAttention` against ``nn.MultiheadAttention``."""
import pytest
import torch
import torch.nn as nn

from rap_sam.deploy.graphs import (PixelRowsFeatureMap, SelfAttention,
                                   sum_parts_for)
from rap_sam.models.layers import (LowRankFeatureMap, masked_sum, project,
                                   weighted_sum)


def _rel_err(actual, expected):
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.fixture
def maps():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(1, 6, 5, 7, generator=g)  # [B, C', H, W]
    weight = torch.randn(10, 8, generator=g)  # C = 10 from C' + 2
    bias = torch.randn(10, generator=g)
    low_rank = LowRankFeatureMap(basis, weight, bias)
    rows = basis.permute(0, 2, 3, 1).contiguous()
    return dict(
        low_rank=low_rank,
        dense=low_rank.dense(),
        rows_low_rank=PixelRowsFeatureMap(rows, weight, bias),
        rows_dense=PixelRowsFeatureMap(low_rank.dense().permute(
            0, 2, 3, 1).contiguous()))


@pytest.mark.parametrize('name', ['rows_low_rank', 'rows_dense'])
def test_pixel_rows_products_equal_the_dense_map(maps, name):
    rows, dense = maps[name], maps['dense']
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(1, 3, 10, generator=g)
    weights = torch.rand(1, 3, 5, 7, generator=g)
    masks = weights > 0.5
    assert rows.shape == dense.shape == (1, 10, 5, 7)
    got = project(rows, queries)
    assert got.shape == (1, 3, 5, 7)
    assert _rel_err(got, project(dense, queries)) < 1e-5
    assert _rel_err(weighted_sum(rows, weights), weighted_sum(dense,
                                                              weights)) < 1e-5
    assert _rel_err(masked_sum(rows, masks), masked_sum(dense, masks)) < 1e-5
    # One query: the projection keeps its query axis.
    assert project(rows, queries[:, :1]).shape == (1, 1, 5, 7)


@pytest.mark.parametrize('parts', [2, 4, 8])
@pytest.mark.parametrize('low_rank', [False, True])
def test_sums_split_in_runs_of_pixels(parts, low_rank):
    """Weighted and masked sums over runs of pixel rows equal the sums
    over all pixels, for one prompt and several."""
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(1, 6, 8, 5, generator=g)
    weight, bias = torch.randn(
        10, 8, generator=g), torch.randn(
            10, generator=g)
    dense = LowRankFeatureMap(basis, weight, bias).dense()
    if low_rank:
        rows = basis.permute(0, 2, 3, 1).contiguous()
        split = PixelRowsFeatureMap(rows, weight, bias, sum_parts=parts)
    else:
        split = PixelRowsFeatureMap(
            dense.permute(0, 2, 3, 1).contiguous(), sum_parts=parts)
    for n in (1, 3):
        weights = torch.rand(1, n, 8, 5, generator=g)
        got = weighted_sum(split, weights)
        assert got.shape == (1, n, 10)
        assert _rel_err(got, weighted_sum(dense, weights)) < 1e-5
        masks = weights > 0.5
        assert _rel_err(masked_sum(split, masks), masked_sum(dense,
                                                             masks)) < 1e-5
    assert split[[0]].sum_parts == parts


@pytest.mark.parametrize('multiple, parts', [(200, 8), (8, 8), (84, 4), (6, 2),
                                             (201, 1), (0, 1)])
def test_sum_parts_divide_the_map_height(multiple, parts):
    assert sum_parts_for(multiple) == parts


def test_pixel_rows_equal_the_low_rank_map(maps):
    rows, low_rank = maps['rows_low_rank'], maps['low_rank']
    queries = torch.randn(1, 2, 10, generator=torch.Generator().manual_seed(2))
    assert _rel_err(project(rows, queries), project(low_rank, queries)) < 1e-5
    torch.testing.assert_close(rows.dense(), low_rank.dense())


@pytest.mark.parametrize('name', ['rows_low_rank', 'rows_dense'])
def test_pixel_rows_index_their_batch(maps, name):
    rows = maps[name]
    two = PixelRowsFeatureMap(
        torch.cat([rows.rows, rows.rows.flip(1)]), rows.weight, rows.bias)
    dense = two.dense()
    for index in (slice(1, 2), [1, 0], torch.tensor([1])):
        picked = two[index]
        assert isinstance(picked, PixelRowsFeatureMap)
        torch.testing.assert_close(picked.dense(), dense[index])
    with pytest.raises(TypeError, match='indexed along its batch'):
        two[0]


@pytest.mark.parametrize('length', [1, 3])
@pytest.mark.parametrize('masked', [False, True])
def test_self_attention_equals_multihead_attention(length, masked):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4).eval()
    query = torch.randn(length, 1, 16)
    mask = None
    if masked:
        # Each query sees itself and the ones before it.
        mask = torch.ones(length, length, dtype=torch.bool).triu(1)
    with torch.no_grad():
        want = mha(query, query, query, attn_mask=mask)[0]
        got, weights = SelfAttention(mha)(query, query, query, attn_mask=mask)
    assert weights is None
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_self_attention_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match='sequence-first'):
        SelfAttention(nn.MultiheadAttention(16, 4, batch_first=True))
