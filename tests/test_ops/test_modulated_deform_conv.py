"""The gather + GEMM modulated deformable conv against mmcv's
ModulatedDeformConv2d (the reference CPU kernel), on random inputs and
offsets that reach far outside the image."""
import pytest
import torch
from helpers import assert_rel_close, conv_out_size, seeded_deform_conv

from rap_sam.models.layers import DeformUpsampleLayer
from rap_sam.models.necks import LiteDeformNeck
from rap_sam.ops import (DeformConvImplError, deform_im2col,
                         modulated_deform_conv2d,
                         modulated_deform_conv2d_torch, use_mmcv_kernel)
from rap_sam.ops.onnx_deform_conv import modulated_deform_conv2d_onnx
from rap_sam.utils import UserError

CASES = [
    # batch, cin, cout, H, W, kernel, stride, pad, dilation, groups, dg, bias
    (1, 8, 6, 9, 11, 3, 1, 1, 1, 1, 1, False),  # the neck's setting
    (2, 8, 6, 7, 5, 3, 1, 1, 1, 1, 1, True),
    (2, 12, 8, 10, 9, 3, 2, 1, 1, 2, 3, True),
    (1, 6, 4, 8, 8, (3, 2), (1, 2), (1, 0), (2, 1), 1, 2, False),
    (1, 4, 4, 1, 1, 3, 1, 1, 1, 1, 1, True),  # a 1x1 image
    (3, 5, 7, 4, 13, 1, 1, 0, 1, 1, 1, True),  # 1x1 kernel
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('offset_scale', [0.5, 4.0, 30.0])
def test_matches_mmcv(case, offset_scale):
    b, cin, cout, h, w, k, s, p, d, groups, dg, bias = case
    conv = seeded_deform_conv(
        cin, cout, k, s, p, d, groups, dg, bias, seed=len(case))
    kh, kw = conv.kernel_size
    ho = conv_out_size(h, kh, conv.stride[0], conv.padding[0],
                       conv.dilation[0])
    wo = conv_out_size(w, kw, conv.stride[1], conv.padding[1],
                       conv.dilation[1])
    g = torch.Generator().manual_seed(int(offset_scale * 10) + b)
    x = torch.randn(b, cin, h, w, generator=g)
    # Offsets up to many pixels: taps beyond the border by less and more
    # than one pixel.
    offset = torch.randn(b, dg * 2 * kh * kw, ho, wo, generator=g) * \
        offset_scale
    mask = torch.rand(b, dg * kh * kw, ho, wo, generator=g)
    with torch.no_grad():
        expected = conv(x, offset, mask)
        actual = modulated_deform_conv2d_torch(x, offset, mask, conv.weight,
                                               conv.bias, conv.stride,
                                               conv.padding, conv.dilation,
                                               conv.groups, conv.deform_groups)
    assert_rel_close(actual, expected)


@pytest.mark.parametrize('impl', ['torch', 'onnx'])
def test_border_cases_exactly(impl):
    """Taps at exactly -1, at the size, at integer and half positions and
    far outside, in each direction: mmcv reads zero at and beyond one pixel
    outside, interpolates with zero neighbours inside that band. For the
    gather + GEMM version and the standard-ONNX-operator one."""
    deform_conv = dict(
        torch=modulated_deform_conv2d_torch,
        onnx=modulated_deform_conv2d_onnx)[impl]
    conv = seeded_deform_conv(3, 2, 3, 1, 1, 1, 1, 1, False, seed=7)
    h, w = 5, 6
    x = torch.randn(1, 3, h, w)
    values = torch.tensor([
        -1e4, -7., -2., -1.5, -1., -0.999, -0.5, -0.25, 0., 0.25, 0.5, 1., 2.5,
        3.999, 4., 4.5, 5., 5.999, 6., 6.5, 7., 1e4
    ])
    g = torch.Generator().manual_seed(0)
    offset = values[torch.randint(len(values), (1, 18, h, w), generator=g)]
    mask = torch.rand(1, 9, h, w, generator=g)
    with torch.no_grad():
        expected = conv(x, offset, mask)
        actual = deform_conv(x, offset, mask, conv.weight, None, 1, 1, 1, 1, 1)
    assert_rel_close(actual, expected)
    # Everything far outside reads zero.
    far = torch.full((1, 18, h, w), 1e4)
    assert deform_conv(x, far, mask, conv.weight, None, 1, 1).abs().max() == 0


def test_zero_offsets_are_a_regular_conv():
    x = torch.randn(2, 4, 6, 7)
    weight = torch.randn(5, 4, 3, 3)
    offset = torch.zeros(2, 18, 6, 7)
    mask = torch.ones(2, 9, 6, 7)
    out = modulated_deform_conv2d_torch(x, offset, mask, weight, None, 1, 1)
    assert_rel_close(out, torch.nn.functional.conv2d(x, weight, padding=1))


def test_im2col_layout_and_memory_formats():
    x = torch.randn(1, 6, 5, 4)
    offset = torch.randn(1, 18, 5, 4)
    mask = torch.rand(1, 9, 5, 4)
    cols = deform_im2col(x, offset, mask, 3, 1, 1)
    assert cols.shape == (5 * 4, 9 * 6)
    weight = torch.randn(3, 6, 3, 3)
    a = modulated_deform_conv2d_torch(x, offset, mask, weight, None, 1, 1)
    b = modulated_deform_conv2d_torch(
        x.contiguous(memory_format=torch.channels_last), offset, mask, weight,
        None, 1, 1)
    assert torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('impl', ['torch', 'onnx'])
def test_upsample_layer_paths_agree_with_mmcv(impl):
    torch.manual_seed(0)
    layer = DeformUpsampleLayer(16, 8, dcn_impl='mmcv').eval()
    with torch.no_grad():
        for p in layer.dcn_offset.parameters():
            p.normal_(std=0.5)  # non-zero offsets and masks
    x = torch.randn(2, 16, 9, 12)
    with torch.no_grad():
        expected = layer(x)
        layer.dcn_impl = impl
        actual = layer(x)
    assert_rel_close(actual, expected)
    assert actual.shape == (2, 8, 18, 24)


def test_impl_choice():
    x = torch.zeros(1)
    assert use_mmcv_kernel(x, 'mmcv')
    assert not use_mmcv_kernel(x, 'torch')
    assert not use_mmcv_kernel(x, 'auto')  # a CPU tensor
    assert not use_mmcv_kernel(x, 'onnx')
    with pytest.raises(DeformConvImplError, match="got 'cuda'"):
        use_mmcv_kernel(x, 'cuda')


def test_impl_is_a_constructor_argument():
    """The neck's config key reaches every deformable step; the attribute
    can be changed later, and a wrong name is a one-line user error."""
    neck = LiteDeformNeck((8, 16, 32, 64), 8, 12, dcn_impl='mmcv')
    layers = neck.deconv.deform_layers()
    assert [layer.dcn_impl for layer in layers] == ['mmcv'] * 3
    neck.dcn_impl = 'onnx'
    assert neck.dcn_impl == 'onnx'
    assert [layer.dcn_impl for layer in layers] == ['onnx'] * 3
    assert DeformUpsampleLayer(4, 2).dcn_impl == 'auto'
    for bad in (lambda: DeformUpsampleLayer(4, 2, dcn_impl='cuda'),
                lambda: setattr(neck, 'dcn_impl', 'fast')):
        with pytest.raises(UserError) as err:
            bad()
        assert '\n' not in str(err.value)
        assert 'auto, torch, mmcv, onnx' in str(err.value)
    assert neck.dcn_impl == 'onnx'


def test_dispatch_matches_both_paths():
    conv = seeded_deform_conv(4, 3, 3, 1, 1, 1, 1, 1, True, seed=3)
    x = torch.randn(1, 4, 6, 6)
    offset = torch.randn(1, 18, 6, 6) * 2
    mask = torch.rand(1, 9, 6, 6)
    args = (x, offset, mask, conv.weight, conv.bias, 1, 1, 1, 1, 1)
    with torch.no_grad():
        expected = modulated_deform_conv2d(*args, impl='mmcv')
        for impl in ('torch', 'onnx', 'auto'):
            assert_rel_close(
                modulated_deform_conv2d(*args, impl=impl), expected)
        with pytest.raises(DeformConvImplError):
            modulated_deform_conv2d(*args, impl='fast')


def test_low_precision_runs():
    """bf16 inputs (autocast on CPUs) go through the gather and GEMM in
    bf16, sampling positions in fp32."""
    x = torch.randn(1, 8, 6, 6)
    offset = torch.randn(1, 18, 6, 6).bfloat16().float()
    mask = torch.rand(1, 9, 6, 6).bfloat16().float()
    weight = torch.randn(4, 8, 3, 3)
    full = modulated_deform_conv2d_torch(x, offset, mask, weight, None, 1, 1)
    half = modulated_deform_conv2d_torch(x.bfloat16(), offset.bfloat16(),
                                         mask.bfloat16(), weight, None, 1, 1)
    assert half.dtype == torch.bfloat16
    assert_rel_close(half.float(), full, rel=5e-2)
