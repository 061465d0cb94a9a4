"""The layout-aware pixel products equal the einsums that define them."""
import pytest
import torch
from helpers import torch_threads

from rap_sam.ops import masked_pixel_sums, pixel_products
from rap_sam.ops.pixel_products import weighted_pixel_sums


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('n', [1, 3, 16, 40])
@pytest.mark.parametrize('layout', [channels_last, torch.Tensor.contiguous])
def test_pixel_products(n, layout):
    g = torch.Generator().manual_seed(n)
    maps = layout(torch.randn(2, 24, 7, 9, generator=g))
    vectors = torch.randn(2, n, 24, generator=g)
    out = pixel_products(vectors, maps)
    assert out.shape == (2, n, 7, 9) and out.is_contiguous()
    want = torch.einsum('bnc,bchw->bnhw', vectors, maps)
    assert rel_err(out, want) < 1e-5


@pytest.mark.parametrize('n', [1, 8, 16, 40])
@pytest.mark.parametrize('layout', [channels_last, torch.Tensor.contiguous])
def test_weighted_pixel_sums(n, layout):
    g = torch.Generator().manual_seed(n)
    maps = layout(torch.randn(2, 24, 7, 9, generator=g))
    weights = torch.rand(2, n, 7, 9, generator=g)
    out = weighted_pixel_sums(weights, maps)
    assert out.shape == (2, n, 24)
    want = torch.einsum('bnhw,bchw->bnc', weights, maps)
    assert rel_err(out, want) < 1e-5


@pytest.mark.parametrize('n', [1, 2, 16, 40])
@pytest.mark.parametrize('threads', [1, 3])
def test_masked_pixel_sums(n, threads):
    g = torch.Generator().manual_seed(n)
    maps = channels_last(torch.randn(2, 24, 7, 9, generator=g))
    masks = torch.rand(2, n, 7, 9, generator=g) < 0.4
    masks[0, 0] = False  # an empty mask sums to zero
    masks[-1, -1] = True  # a full one to the sum of all pixels
    with torch_threads(threads):
        out = masked_pixel_sums(masks, maps)
    want = torch.einsum('bnhw,bchw->bnc', masks.float(), maps)
    assert out.shape == (2, n, 24)
    assert torch.allclose(out, want, atol=1e-5)
    assert torch.equal(out[0, 0], torch.zeros(24))
    assert torch.allclose(out[-1, -1], maps[-1].sum((1, 2)), atol=1e-5)


def test_masked_pixel_sums_with_autograd_uses_dense_product():
    maps = channels_last(torch.randn(1, 8, 4, 5)).requires_grad_()
    masks = torch.rand(1, 2, 4, 5) < 0.5
    masked_pixel_sums(masks, maps).sum().backward()
    # d/dmaps of the masked sum: how many masks cover each pixel.
    assert torch.equal(maps.grad[0, 0], masks[0].sum(0).float())
