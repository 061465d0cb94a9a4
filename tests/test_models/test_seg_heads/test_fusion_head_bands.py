"""Instance masks that span few rows are computed on those rows only; the
results must stay exactly mmdet's (rap_sam.deploy.ReferenceFusionHead:
every mask upsampled, then MaskFormerFusionHead)."""
import pytest
import torch
from test_scored_panoptic_fusion_head import assert_same, sample

from rap_sam.deploy import ReferenceFusionHead
from rap_sam.models.seg_heads import ScoredPanopticFusionHead
from rap_sam.models.seg_heads.bilinear_rows import BilinearRows
from rap_sam.models.seg_heads.scored_panoptic_fusion_head import _SumWindow
from rap_sam.testing.fusion_outputs import object_like_outputs

THINGS, STUFF = 8, 5


def heads(**test_cfg):
    cfg = dict(panoptic_on=True, instance_on=True, max_per_image=40)
    cfg.update(test_cfg)
    kwargs = dict(
        num_things_classes=THINGS, num_stuff_classes=STUFF, test_cfg=cfg)
    return ScoredPanopticFusionHead(**kwargs), ReferenceFusionHead(
        segments=True, **kwargs)


def _bands(head, mask_pred, queries, size, meta, rescale):
    """The instance queries ``head`` computes on windows, as its predict
    plans them."""
    return head._bands(mask_pred, queries, meta,
                       head._band_plan(mask_pred, size, meta, rescale))


def ellipse(h, w, cy, cx, ry, rx, sharp=2.):
    """Logits positive inside an ellipse (a signed distance, about)."""
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    r = torch.sqrt(((ys - cy) / ry)**2 + ((xs - cx) / rx)**2)
    return (1 - r) * min(ry, rx) * sharp


def edge_case_outputs(h, w, seed=0):
    """Object-like outputs plus the band's edge cases as instance
    candidates: objects on the top and bottom rows, one-row objects, an
    empty mask, a mask over most rows."""
    cls, masks = object_like_outputs((h, w),
                                     num_queries=24,
                                     num_things_classes=THINGS,
                                     num_stuff_classes=STUFF,
                                     num_confident=4,
                                     num_empty=3,
                                     seed=seed)
    special = [
        ellipse(h, w, 0, w / 3, 2, 5),  # touches the top
        ellipse(h, w, h - 1, w / 2, 3, 8),  # touches the bottom
        ellipse(h, w, -1.5, w / 4, 2, 9),  # only its lowest row is inside
        ellipse(h, w, h + 0.5, w / 5, 1.5, 9),  # its top row only
        torch.full((h, w), -3.),  # empty
        ellipse(h, w, h / 2, w / 2, h * 0.45, w / 3),  # most rows
    ]
    one_row = torch.full((h, w), -4.)
    one_row[h // 3, w // 4:w // 2] = 1.5  # a line one logit row high
    special.append(one_row)
    single = torch.full((h, w), -4.)
    single[h // 2 + 1, w // 2] = 0.25  # one positive logit
    special.append(single)
    special.append(ellipse(h, w, h / 4, 0, 4, 2))  # touches the left
    special.append(ellipse(h, w, h * 0.7, w - 1, 3, 3))  # and the right
    for i, m in enumerate(special):
        masks[0, 4 + i] = m
        # Instance candidates: likely enough for the top pairs, not
        # confident enough for the panoptic filter.
        cls[0, 4 + i, i % THINGS] = 3.
    return cls, masks


# img_shape, ori_shape, padded, mask size, rescale
CASES = [
    ((160, 256), (160, 256), (160, 256), (40, 64), True),
    ((150, 250), (150, 250), (160, 256), (40, 64), True),
    ((150, 250), (300, 500), (160, 256), (40, 64), False),
    ((148, 252), (148, 252), (160, 256), (20, 32), False),
    ((140, 250), (140, 250), (144, 256), (144, 256), True),
    ((120, 192), (120, 192), (120, 192), (40, 64), True),
    # Resized to the original size: down, up, odd sizes, one side only.
    ((150, 250), (97, 161), (160, 256), (40, 64), True),
    ((150, 250), (300, 500), (160, 256), (40, 64), True),
    ((148, 252), (223, 379), (160, 256), (20, 32), True),
    ((140, 250), (140, 311), (144, 256), (144, 256), True),
    ((140, 250), (97, 173), (144, 256), (144, 256), True),
    ((150, 250), (151, 250), (160, 256), (40, 64), True),
    ((128, 200), (427, 640), (128, 224), (32, 56), True),
    ((160, 256), (37, 250), (160, 256), (40, 64), True),
    ((157, 253), (81, 127), (160, 256), (40, 64), True),
    # A ratio that is not a power of two: the full-size path.
    ((120, 192), (120, 192), (120, 192), (40, 64), True),
    ((120, 192), (333, 517), (120, 192), (40, 64), True),
]


@pytest.fixture
def one_thread():
    """One thread: PyTorch's sigmoid then takes its scalar kernel (last
    bit different) only at the end of the whole call, in mmdet's call too,
    rather than at each thread's share's end."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('case', CASES)
def test_bands_same_as_mmdet(case, one_thread):
    img_shape, ori_shape, pad, mask_hw, rescale = case
    ours, ref = heads()
    cls, masks = edge_case_outputs(*mask_hw)
    samples = [sample(img_shape, ori_shape, pad)]
    got = ours.predict(cls, masks, samples, rescale=rescale)[0]
    want = ref.predict(cls, masks, samples, rescale=rescale)[0]
    assert_same(got, want)
    instances = want['ins_results']
    queries = sorted(set(got['ins_results'].query_indices.tolist()))
    bands = _bands(ours, masks[0], queries, pad, samples[0].metainfo, rescale)
    ratio = pad[0] / mask_hw[0]
    if ratio not in (1, 2, 4, 8):
        # A scale whose source rows are not exact keeps the full-size
        # path.
        assert bands == {}
        return
    out_h, out_w = ori_shape if rescale else img_shape
    windows = [b[2:4] + b[6:] for b in bands.values()]
    # Not vacuous: windows of every kind were taken, and masks are found.
    assert any(y1 > y0 for y0, y1, _, _ in windows)
    assert any(y1 == y0 for y0, y1, _, _ in windows)
    assert any(y0 == 0 for y0, y1, _, _ in windows if y1 > y0)
    assert any(y1 == out_h for _, y1, _, _ in windows)
    assert any(x0 == 0 for y0, y1, x0, _ in windows if y1 > y0)
    assert any(x1 == out_w for _, _, _, x1 in windows)
    assert any(0 < x0 and x1 < out_w for _, _, x0, x1 in windows)
    assert len(bands) < len(queries)  # the big mask: full size
    assert instances.masks.flatten(1).any(1).sum() >= 8
    # Bands take the vectorised sigmoid on every pixel, as mmdet's call
    # does on all but its last: mask scores are bit for bit.
    assert torch.equal(got['ins_results'].scores, instances.scores)


@pytest.mark.parametrize('ori_shape', [(97, 161), (301, 499), (150, 311),
                                       (333, 250), (81, 127), (41, 100)])
@pytest.mark.parametrize('seed', [3, 4])
def test_resized_bands_same_as_mmdet(ori_shape, seed, one_thread):
    """More original sizes and outputs, resized from a 150x250 image:
    every result bit for bit mmdet's, mask scores included."""
    ours, ref = heads()
    cls, masks = edge_case_outputs(40, 64, seed=seed)
    samples = [sample((150, 250), ori_shape, (160, 256))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert torch.equal(got['ins_results'].scores, want['ins_results'].scores)
    queries = sorted(set(got['ins_results'].query_indices.tolist()))
    bands = _bands(ours, masks[0], queries, (160, 256), samples[0].metainfo,
                   True)
    assert sum(b[3] > b[2] for b in bands.values()) >= 8


@pytest.mark.parametrize('ori_shape', [(60, 68), (30, 90)])
def test_tiny_resized_outputs_keep_the_full_size_path(ori_shape, one_thread):
    """An original size whose height and width add up to at most 128 takes
    PyTorch's other resize kernel: no band, results mmdet's."""
    ours, ref = heads()
    cls, masks = edge_case_outputs(40, 64)
    samples = [sample((150, 250), ori_shape, (160, 256))]
    assert _bands(ours, masks[0], list(range(12)), (160, 256),
                  samples[0].metainfo, True) == {}
    assert_same(
        ours.predict(cls, masks, samples, rescale=True)[0],
        ref.predict(cls, masks, samples, rescale=True)[0])


def test_scale_without_exact_argument_keeps_the_full_size_path(
        monkeypatch, one_thread):
    """Where no ``scales_h`` gives the resize's scale (none found for sizes
    up to 2048), no band: results mmdet's."""
    ours, ref = heads()
    cls, masks = edge_case_outputs(40, 64)
    samples = [sample((150, 250), (97, 161), (160, 256))]
    meta = samples[0].metainfo
    assert _bands(ours, masks[0], list(range(12)), (160, 256), meta, True)
    monkeypatch.setattr(BilinearRows, 'scale_argument', lambda self: None)
    assert _bands(ours, masks[0], list(range(12)), (160, 256), meta,
                  True) == {}
    assert_same(
        ours.predict(cls, masks, samples, rescale=True)[0],
        ref.predict(cls, masks, samples, rescale=True)[0])


def test_band_results_equal_the_full_size_path(one_thread):
    """The same head with bands off: every output bit for bit."""
    ours, _ = heads()
    full, _ = heads()
    full.band_fraction = -1
    cls, masks = edge_case_outputs(40, 64, seed=1)
    samples = [sample((160, 256), (160, 256), (160, 256))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = full.predict(cls, masks, samples, rescale=True)[0]
    for key in want['ins_results'].keys():
        assert torch.equal(got['ins_results'].get(key),
                           want['ins_results'].get(key)), key
    assert torch.equal(got['pan_results'].sem_seg, want['pan_results'].sem_seg)


@pytest.mark.parametrize('test_cfg', [
    dict(panoptic_on=False),
    dict(object_mask_thr=0.99),
    dict(max_per_image=1),
    dict(max_per_image=3),
])
def test_bands_other_settings(test_cfg):
    """No kept panoptic query, a single pair, few pairs."""
    ours, ref = heads(**test_cfg)
    cls, masks = edge_case_outputs(40, 64, seed=2)
    # The best pair: a small object.
    cls[0, 5, 2] = 30.
    samples = [sample((160, 256), (160, 256), (160, 256))]
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert len(want['ins_results']) >= 1


def test_dense_masks_keep_the_full_size_path():
    """Random weights' masks cover most rows: no band."""
    ours, _ = heads()
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(10, 40, 64, generator=g)
    meta = dict(img_shape=(160, 256), ori_shape=(160, 256))
    assert _bands(ours, masks, list(range(10)), (160, 256), meta, True) == {}


@pytest.mark.parametrize('h, w', [(800, 1344), (427, 640), (397, 660),
                                  (37, 55)])
def test_sum_window_is_the_full_row_sum(h, w):
    """A band's sums over an aligned window are the full-size row sums,
    bit for bit."""
    g = torch.Generator().manual_seed(h)
    window = _SumWindow(torch.zeros(1), h, w)
    for y0, y1, x0, x1 in [(0, 1, 0, w), (h // 3, h // 3 + 7, 0, w),
                           (h // 2, h, 0, w), (0, h, 0, w), (h - 1, h, 0, w),
                           (h // 3, h // 2, w // 3, w // 2), (0, 1, 0, 1),
                           (h - 1, h, w - 1, w), (0, h, w // 2, w)]:
        probs = torch.rand(y1 - y0, x1 - x0, generator=g) * 0.5 + 0.5
        ones = (torch.rand(y1 - y0, x1 - x0, generator=g) > 0.3).float()
        probs *= ones
        full = torch.zeros(2, h, w)
        full[0, y0:y1, x0:x1], full[1, y0:y1, x0:x1] = ones, probs
        want = full.view(2, -1).sum(1)
        got = window.sums(y0, x0, ones, probs)
        assert torch.equal(got, want)
        assert not window.zeros.any()  # left zero for the next band


@pytest.mark.parametrize('img_shape, ori_shape', [((150, 250), (97, 161)),
                                                  ((150, 250), (300, 500)),
                                                  ((150, 250), (150, 311)),
                                                  ((149, 250), (451, 250)),
                                                  ((150, 250), (40, 100)),
                                                  ((150, 250), (37, 451))])
def test_band_resize_is_the_full_resize(img_shape, ori_shape, one_thread):
    """Any window of a dense mask, at the corners, one pixel, most of the
    image (and where the top left input and output corners would be as
    large, which aten copies), bit for bit the full resize's pixels."""
    ours, _ = heads()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 40, 64, generator=g) * 4
    meta = dict(img_shape=img_shape, ori_shape=ori_shape)
    full = ours._resize(logits, (160, 256), meta, True)[0]
    ratio, resize = ours._band_plan(logits, (160, 256), meta, True)
    spans = []
    for n in ori_shape:
        spans.append({(0, 1), (0, n), (n - 1, n), (n // 3, n // 2)}
                     | {(y, y + 3)
                        for y in range(0, n - 3, max(n // 9, 1))})
    clashes = 0
    for y0, y1 in sorted(spans[0]):
        for x0, x1 in sorted(spans[1]):
            band = ()
            for axis, (i0, i1), n_l in zip(resize, [(y0, y1), (x0, x1)],
                                           (40, 64)):
                q0, q1 = axis.read_by(i0, i1)
                band += (max(q0 // ratio - 1,
                             0), min((q1 - 1) // ratio + 1, n_l - 1), i0, i1)
                clashes += not axis.identity and q1 == i1
            got = ours._band_resize(logits[0], band, (160, 256), resize, {})
            assert torch.equal(got, full[y0:y1, x0:x1]), band
    if ori_shape == (451, 250):
        assert clashes > 0


@pytest.mark.parametrize('ori_shape', [(150, 250), (97, 161)])
def test_tall_thin_mask_takes_a_band(ori_shape, one_thread):
    """A mask over every row but few columns spans little of the image: it
    is computed on its window, and the results are mmdet's."""
    ours, ref = heads()
    cls, masks = edge_case_outputs(40, 64)
    masks[0, 5] = ellipse(40, 64, 20, 30, 30, 3)
    samples = [sample((150, 250), ori_shape, (160, 256))]
    bands = _bands(ours, masks[0], [5], (160, 256), samples[0].metainfo, True)
    _, _, y0, y1, _, _, x0, x1 = bands[5]
    assert (y0, y1) == (0, ori_shape[0]) and x1 - x0 < ori_shape[1] / 4
    got = ours.predict(cls, masks, samples, rescale=True)[0]
    want = ref.predict(cls, masks, samples, rescale=True)[0]
    assert_same(got, want)
    assert torch.equal(got['ins_results'].scores, want['ins_results'].scores)
    assert 5 in got['ins_results'].query_indices.tolist()
