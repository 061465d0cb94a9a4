"""The neck's output kept as its last 1x1 conv: every product the decoder
takes equals the one with the dense map, and the optimised model predicts
what the plain one does."""
import copy

import pytest
import torch
from helpers import build_model, image_batch, torch_threads, video_batch

from rap_sam.deploy import prepare
from rap_sam.models.layers import (LowRankFeatureMap, dense, masked_sum,
                                   project, softmax_pool, weighted_sum,
                                   with_coordinates)
from rap_sam.models.necks import LiteDeformNeck


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture
def maps():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(
        2, 6, 5, 7, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(10, 8, generator=g)
    bias = torch.randn(10, generator=g)
    low_rank = LowRankFeatureMap(basis, weight, bias)
    full = torch.nn.functional.conv2d(
        with_coordinates(basis), weight[:, :, None, None], bias)
    return low_rank, full


def test_dense_is_the_conv(maps):
    low_rank, full = maps
    assert low_rank.shape == full.shape == (2, 10, 5, 7)
    assert torch.allclose(dense(low_rank), full, atol=1e-6)
    # The coordinate channels: x along the width, y along the height.
    coords = with_coordinates(low_rank.basis)[0, -2:]
    assert torch.equal(coords[0, 0], torch.linspace(-1, 1, 7))
    assert torch.equal(coords[1, :, 0], torch.linspace(-1, 1, 5))


@pytest.mark.parametrize('n', [1, 4, 30])
def test_products_equal_the_dense_map(maps, n):
    low_rank, full = maps
    g = torch.Generator().manual_seed(n)
    queries = torch.randn(2, n, 10, generator=g)
    weights = torch.rand(2, n, 5, 7, generator=g)
    masks = weights > 0.5
    assert rel_err(project(low_rank, queries), project(full, queries)) < 1e-5
    assert rel_err(
        weighted_sum(low_rank, weights), weighted_sum(full, weights)) < 1e-5
    assert rel_err(masked_sum(low_rank, masks), masked_sum(full, masks)) < 1e-5


def test_masked_sum_gathers_at_most_half_the_map(monkeypatch):
    """Masks over most of the map are summed as the map's total minus the
    pixels off them: the dense map's sums, never more than half the
    pixels gathered, and each mask's sum the same alone as in a batch
    (the predictor decodes prompts in batches)."""
    import rap_sam.models.layers.low_rank_feature_map as lrfm
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(
        2, 6, 8, 9, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(10, 8, generator=g)
    bias = torch.randn(10, generator=g)
    low_rank = LowRankFeatureMap(basis, weight, bias)
    full = low_rank.dense()
    pixels = 8 * 9
    masks = torch.zeros(2, 5, pixels, dtype=torch.bool)
    masks[:, 1] = True  # all on
    masks[:, 2, 1:] = True  # all but one
    masks[:, 3, :pixels // 2] = True  # half: gathered as it is
    masks[:, 4, 5] = True  # one pixel
    masks[1] = masks[1].flip(-1)
    masks = masks.view(2, 5, 8, 9)
    want = masked_sum(full, masks)
    gathered = []
    real = lrfm.masked_pixel_sums

    def spy(m, maps):
        gathered.append(m.sum((2, 3)))
        return real(m, maps)

    monkeypatch.setattr(lrfm, 'masked_pixel_sums', spy)
    got = masked_sum(low_rank, masks)
    assert rel_err(got, want) < 1e-5
    assert torch.equal(got[:, 0], torch.zeros(2, 10))
    assert torch.equal(gathered[-1],
                       torch.tensor([[0, 0, 1, 36, 1]]).expand(2, -1))
    # Masks only empty or full: nothing to gather, the sum is the total.
    calls = len(gathered)
    edge = masked_sum(low_rank, masks[:, :2])
    assert len(gathered) == calls
    assert torch.equal(edge[:, 0], torch.zeros(2, 10))
    assert rel_err(edge[:, 1], full.sum((2, 3))) < 1e-5
    # Bit for bit in the map's basis (the product through the conv's
    # weight that follows rounds by the batch's shape, as before).
    pooled = low_rank._masked_basis_sum(masks)
    assert torch.equal(low_rank._masked_basis_sum(masks[:, :2]), pooled[:, :2])
    for i in range(5):
        assert torch.equal(
            low_rank._masked_basis_sum(masks[:, i:i + 1]), pooled[:, i:i + 1])


@pytest.mark.parametrize(
    'index', [slice(1, 2), slice(0, 2), [1, 0],
              torch.tensor([1])])
def test_indexing_the_batch_is_the_dense_maps(maps, index):
    low_rank, full = maps
    picked = low_rank[index]
    assert isinstance(picked, LowRankFeatureMap)
    assert torch.allclose(picked.dense(), full[index], atol=1e-6)
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(picked.shape[0], 3, 10, generator=g)
    assert rel_err(project(picked, queries), project(full[index],
                                                     queries)) < 1e-5


@pytest.mark.parametrize('index', [0, (0, 1), None, torch.tensor(0)])
def test_indexing_that_drops_the_batch_is_refused(maps, index):
    with pytest.raises(TypeError, match='indexed along its batch'):
        maps[0][index]


def test_wrong_weight_width():
    with pytest.raises(ValueError, match='does not map 6 channels'):
        LowRankFeatureMap(
            torch.zeros(1, 6, 2, 2), torch.zeros(4, 6), torch.zeros(4))


def test_neck_outputs():
    neck = LiteDeformNeck(
        in_channels=(8, 16, 32, 64), agg_channels=8, out_channels=12).eval()
    feats = [
        torch.randn(1, c, 32 // s, 48 // s)
        for c, s in zip((8, 16, 32, 64), (1, 2, 4, 8))
    ]
    with torch.no_grad():
        full = neck(feats)
        assert not neck.low_rank_output
        neck.switch_to_deploy()
        low_rank = neck(feats)
        assert isinstance(low_rank, LowRankFeatureMap)
        assert torch.allclose(low_rank.dense(), full, atol=1e-5)
        neck.train()
        assert isinstance(neck(feats), torch.Tensor)  # eval only


@pytest.mark.parametrize('num_prompts', [1, 2])
def test_optimized_model_prompts(num_prompts):
    model = build_model('rap_sam/eval_rap_sam_prompt.py', seed=5)
    fast = prepare(copy.deepcopy(model), 'fast')
    g = torch.Generator().manual_seed(0)
    img = torch.randint(
        0, 256, (96, 128, 3), generator=g, dtype=torch.uint8).numpy()
    boxes = torch.tensor([[30., 40., 36., 46.], [10., 12., 90., 70.]])
    batch = image_batch([img], prompts=[boxes[:num_prompts]])
    data = model.data_preprocessor(copy.deepcopy(batch))
    with torch.no_grad():
        got = fast(data['inputs'], data['data_samples'], mode='tensor')
        want = model(data['inputs'], data['data_samples'], mode='tensor')
        for a_list, b_list in zip(got[:3], want[:3]):
            assert len(a_list) == len(b_list)
            for a, b in zip(a_list, b_list):
                # The tolerance (IoU outputs can be ~1e-3 in size).
                assert rel_err(a, b) < 1e-3
        ours = fast.test_step(copy.deepcopy(batch))[0].pred_instances
        ref = model.test_step(copy.deepcopy(batch))[0].pred_instances
    assert (ours.masks == ref.masks).float().mean() > 0.999
    assert torch.allclose(ours.iou_scores, ref.iou_scores, atol=1e-4)


def test_optimized_model_clip():
    model = build_model('rap_sam/eval_rap_sam_yt19.py', seed=6)
    fast = prepare(copy.deepcopy(model), 'fast')
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(
        0, 256, (3, 64, 96, 3), generator=g, dtype=torch.uint8).numpy()
    with torch.no_grad():
        data = model.data_preprocessor(video_batch(frames))
        feats = fast.extract_feat(data['inputs'])
        assert isinstance(feats, LowRankFeatureMap)
        got = fast.panoptic_head.predict(feats, data['data_samples'])
        want = model.panoptic_head.predict(
            model.extract_feat(data['inputs']), data['data_samples'])
    assert got[1].shape == want[1].shape and got[1].dim() == 5
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-3


@pytest.mark.parametrize('n', [1, 8])
def test_pixel_table_products_equal_the_basis_ones(maps, n):
    """A few vectors go through the pixel table [g; x; y; 1]: the sums of
    the path without it (coordinate terms added over the map), to float
    rounding; the table is made once per map."""
    low_rank, full = maps
    plain = LowRankFeatureMap(low_rank.basis, low_rank.weight, low_rank.bias)
    plain.use_pixel_table = False
    g = torch.Generator().manual_seed(n)
    queries = torch.randn(2, n, 10, generator=g)
    weights = torch.rand(2, n, 5, 7, generator=g)
    masks = weights > 0.3
    table = low_rank.pixel_table()
    assert table.shape == (2, 9, 5, 7)
    assert table.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(table[:, :6], low_rank.basis)
    assert torch.equal(table[:, 8], torch.ones(2, 5, 7))
    assert torch.equal(table[:, 6:8], with_coordinates(low_rank.basis)[:, 6:])
    for op, arg in ((project, queries), (weighted_sum, weights), (masked_sum,
                                                                  masks)):
        got, want = op(low_rank, arg), op(plain, arg)
        assert rel_err(got, want) < 1e-5, op
        assert rel_err(got, op(full, arg)) < 1e-5, op
    assert low_rank.pixel_table() is table
    assert 'pixel_table' not in plain._cache
    # Products read the table channel-major (one [C' + 3, H * W] matrix),
    # gathers its pixel rows.
    columns = low_rank._cache['pixel_columns']
    assert columns.is_contiguous() and torch.equal(columns, table)
    assert low_rank.pixel_columns() is columns


@pytest.mark.parametrize('n', [1, 6, 8])
@pytest.mark.parametrize('threads', [1, 2, 3, 4])
@pytest.mark.parametrize('size', [(5, 7), (4, 6)])
def test_softmax_pool_is_the_softmax_weighted_sum(n, threads, size,
                                                  monkeypatch):
    """The fused pass over the pixel rows (the pixels split in a part per
    thread where their count divides, the parts merged by their
    log-sum-exps) gives the softmax of the projections times the pixels,
    as the dense map gives it."""
    from rap_sam.models.layers import low_rank_feature_map as module
    g = torch.Generator().manual_seed(n * threads)
    basis = torch.randn(
        2, 6, *size, generator=g).contiguous(memory_format=torch.channels_last)
    low_rank = LowRankFeatureMap(basis, torch.randn(10, 8, generator=g),
                                 torch.randn(10, generator=g))
    full = dense(low_rank)
    vectors = torch.randn(2, n, 10, generator=g) * 0.5
    calls = []
    kernel = module._flash_attention

    def spy(q, k, v, **kwargs):
        calls.append(k.shape[:3])
        return kernel(q, k, v, **kwargs)

    monkeypatch.setattr(module, '_flash_attention', spy)
    with torch_threads(threads):
        got = softmax_pool(low_rank, vectors)
    scores = torch.einsum('bnc,bchw->bnhw', vectors, full).flatten(2)
    want = torch.einsum('bnp,bcp->bnc', scores.softmax(-1), full.flatten(2))
    assert got.shape == (2, n, 10)
    assert rel_err(got, want) < 1e-5
    # 35 pixels stay whole; 24 split in 2, 3 or 4 runs of pixels.
    parts = threads if size == (4, 6) else 1
    assert calls == ([] if parts == 1 else [(2 * parts, 1, 24 // parts)])
    assert rel_err(softmax_pool(full, vectors), want) < 1e-5
    plain = LowRankFeatureMap(low_rank.basis, low_rank.weight, low_rank.bias)
    plain.use_pixel_table = False
    assert rel_err(softmax_pool(plain, vectors), want) < 1e-5


def test_softmax_pool_in_parts_under_bf16():
    """Under bf16 autocast the split pass stays within bf16 rounding of the
    fp32 result."""
    g = torch.Generator().manual_seed(3)
    basis = torch.randn(
        1, 6, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(
        10, 8, generator=g), torch.randn(
            10, generator=g)
    vectors = torch.randn(1, 8, 10, generator=g) * 0.3
    want = softmax_pool(LowRankFeatureMap(basis, weight, bias), vectors)
    with torch_threads(2), torch.autocast('cpu', torch.bfloat16):
        got = softmax_pool(
            LowRankFeatureMap(basis.bfloat16(), weight, bias), vectors)
    assert got.dtype == torch.bfloat16
    assert rel_err(got.float(), want) < 2e-2


@pytest.mark.parametrize('threads', [1, 2])
def test_one_mask_sums_the_pixels_of_the_batched_gather(threads):
    """A click's single mask takes a shorter path in masked_pixel_sums: the
    same pixels in the same bags as a batch of masks, so the same sums bit
    for bit, summed from the pixels off the mask when it covers more than
    half."""
    g = torch.Generator().manual_seed(4)
    basis = torch.randn(
        1, 6, 8, 9, generator=g).contiguous(memory_format=torch.channels_last)
    low_rank = LowRankFeatureMap(basis, torch.randn(10, 8, generator=g),
                                 torch.randn(10, generator=g))
    full = low_rank.dense()
    with torch_threads(threads):
        for frac in (0., 0.02, 0.4, 0.5, 0.8, 1.):
            mask = torch.rand(1, 1, 8, 9, generator=g) < frac
            for of in ('basis', 'table'):
                got = low_rank._masked_basis_sum(mask, of)
                batched = low_rank._masked_basis_sum(
                    mask.repeat(1, 2, 1, 1), of)
                assert torch.equal(got, batched[:, :1]), (frac, of)
            want = masked_sum(full, mask)
            scale = full.abs().sum()
            assert ((masked_sum(low_rank, mask) - want).abs().max() /
                    scale) < 1e-6


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_many_vectors_take_the_table_in_reduced_precision(maps, dtype):
    """The image decoder's many queries go through the pixel table when the
    map is bf16 on a CPU (channel-major once per map, no coordinate
    passes), and through the basis in fp32; both give the dense map's
    products within their precision."""
    low_rank, full = maps
    n = 30  # more than MAX_VECTORS
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(2, n, 10, generator=g)
    masks = torch.rand(2, n, 5, 7, generator=g) > 0.5
    fmap = LowRankFeatureMap(
        low_rank.basis.to(dtype), low_rank.weight.to(dtype),
        low_rank.bias.to(dtype))
    got_project = project(fmap, queries.to(dtype))
    got_sum = masked_sum(fmap, masks)
    assert got_project.dtype == got_sum.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert rel_err(got_project.float(), project(full, queries)) < tolerance
    assert rel_err(got_sum.float(), masked_sum(full, masks)) < tolerance
    if dtype == torch.float32:
        assert fmap._cache.keys() <= {'weight', 'coords'}
    else:
        assert fmap._cache['pixel_columns'].is_contiguous()
        assert 'pixel_table' in fmap._cache
