"""BilinearRows must name the rows PyTorch's bilinear resize reads: probed
with one-hot input rows through the kernel itself."""
import numpy as np
import pytest
import torch

from rap_sam.models.seg_heads.bilinear_rows import BilinearRows


def kernel_reads(in_size, out_size):
    """``[out_size, in_size]``: whether output row y reads input row r with
    a non-zero weight, from the kernel (one one-hot channel per input row;
    the generic kernel, as the fusion head's resizes take: over 128 output
    rows and columns together)."""
    width = 1 if out_size > 128 else 130
    probe = torch.zeros(1, in_size, in_size, width)
    probe[0, torch.arange(in_size), torch.arange(in_size)] = 1.
    out = torch.nn.functional.interpolate(
        probe, size=(out_size, width), mode='bilinear', align_corners=False)
    return (out[0, :, :, 0] != 0).T.numpy()


@pytest.mark.parametrize('in_size, out_size',
                         [(150, 97), (150, 300), (57, 113), (800, 480),
                          (427, 640), (161, 160), (160, 161), (3, 200),
                          (200, 3), (64, 64)])
def test_rows_are_the_kernels(in_size, out_size):
    rows = BilinearRows(in_size, out_size)
    reads = kernel_reads(in_size, out_size)
    y = np.arange(out_size)
    # The first row always has a weight; the second where it is not 0.
    assert reads[y, rows.first].all()
    others = reads.copy()
    others[y, rows.first] = False
    others[y, rows.last] = False
    assert not others.any()
    assert (rows.last - rows.first <= 1).all()
    assert rows.identity == (in_size == out_size)


def test_row_ranges_cover_the_reads():
    rows = BilinearRows(150, 97)
    reads = kernel_reads(150, 97)
    for p0, p1 in [(0, 1), (40, 41), (40, 60), (149, 150), (0, 150)]:
        y0, y1 = rows.reading(p0, p1)
        readers = reads[:, p0:p1].any(1).nonzero()[0]
        # Every reader inside, at most one more row on each side.
        assert y0 <= readers[0] and readers[-1] < y1
        assert readers[0] - y0 <= 1 and y1 - 1 - readers[-1] <= 1
        q0, q1 = rows.read_by(y0, y1)
        read = reads[y0:y1].any(0).nonzero()[0]
        assert q0 <= read[0] and read[-1] < q1
    assert rows.reading(5, 5) == (0, 0)


@pytest.mark.parametrize('in_size, out_size', [(150, 97), (800, 480),
                                               (57, 113), (1067, 640)])
def test_scale_argument_gives_the_full_resize_rows(in_size, out_size):
    """The top rows of a resize of the top input rows, with the scale
    argument: bit for bit the full resize's."""
    g = torch.Generator().manual_seed(in_size)
    x = torch.randn(1, 1, in_size, 140, generator=g)
    full = torch.nn.functional.interpolate(
        x, size=(out_size, 150), mode='bilinear', align_corners=False)
    scale = BilinearRows(in_size, out_size).scale_argument()
    m = out_size // 2
    n = in_size // 2 + 3
    top = torch._C._nn.upsample_bilinear2d(x[:, :, :n], (m, 150), False, scale,
                                           None)
    assert torch.equal(top, full[:, :, :m])
    # From the sizes, aten computes another scale: other rows.
    other = torch._C._nn.upsample_bilinear2d(x[:, :, :n], (m, 150), False,
                                             None, None)
    assert not torch.equal(other, full[:, :, :m])
    assert BilinearRows(64, 64).scale_argument() is None
