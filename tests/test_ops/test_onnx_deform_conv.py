"""The standard-ONNX-operator modulated deformable conv against mmcv's
kernel and the gather + GEMM version, and its exported graph: standard
operators, no Loop, the same numbers in onnxruntime at the exported size
and at another one (dynamic height and width)."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import assert_rel_close, conv_out_size, seeded_deform_conv

from rap_sam.ops import modulated_deform_conv2d_torch
from rap_sam.ops.onnx_deform_conv import modulated_deform_conv2d_onnx


def inputs_for(conv, b, h, w, offset_scale, seed):
    kh, kw = conv.kernel_size
    dg = conv.deform_groups
    ho = conv_out_size(h, kh, conv.stride[0], conv.padding[0],
                       conv.dilation[0])
    wo = conv_out_size(w, kw, conv.stride[1], conv.padding[1],
                       conv.dilation[1])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, conv.in_channels, h, w, generator=g)
    offset = torch.randn(
        b, dg * 2 * kh * kw, ho, wo, generator=g) * offset_scale
    mask = torch.rand(b, dg * kh * kw, ho, wo, generator=g)
    return x, offset, mask


def conv_args(conv):
    return (conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.deform_groups)


CASES = [
    # batch, cin, cout, H, W, kernel, stride, pad, dilation, groups, dg, bias
    (1, 8, 6, 9, 11, 3, 1, 1, 1, 1, 1, False),  # the neck's (project first)
    (2, 8, 6, 7, 5, 3, 1, 1, 1, 1, 1, True),
    (1, 4, 8, 6, 7, 3, 1, 1, 1, 1, 1, True),  # widening: im2col + GEMM
    (2, 12, 8, 10, 9, 3, 2, 1, 1, 2, 3, True),  # groups, deform groups
    (1, 6, 4, 8, 8, (3, 2), (1, 2), (1, 0), (2, 1), 1, 2, False),
    (1, 4, 4, 1, 1, 3, 1, 1, 1, 1, 1, True),  # a 1x1 image
    (3, 5, 7, 4, 13, 1, 1, 0, 1, 1, 1, True),  # 1x1 kernel
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('offset_scale', [0.5, 4.0, 30.0])
def test_matches_mmcv_and_gather_gemm(case, offset_scale):
    b, cin, cout, h, w, k, s, p, d, groups, dg, bias = case
    conv = seeded_deform_conv(
        cin, cout, k, s, p, d, groups, dg, bias, seed=len(case))
    x, offset, mask = inputs_for(conv, b, h, w, offset_scale,
                                 int(offset_scale * 10) + b)
    with torch.no_grad():
        expected = conv(x, offset, mask)
        actual = modulated_deform_conv2d_onnx(x, offset, mask,
                                              *conv_args(conv))
        fast = modulated_deform_conv2d_torch(x, offset, mask, *conv_args(conv))
    assert_rel_close(actual, expected)
    assert_rel_close(actual, fast)


def test_zero_offsets_are_a_regular_conv():
    x = torch.randn(2, 4, 6, 7)
    weight = torch.randn(5, 4, 3, 3)
    out = modulated_deform_conv2d_onnx(x, torch.zeros(2, 18, 6, 7),
                                       torch.ones(2, 9, 6, 7), weight, None, 1,
                                       1)
    assert_rel_close(out, torch.nn.functional.conv2d(x, weight, padding=1))


class _Conv(torch.nn.Module):
    """Offsets and mask from a plain conv, as DeformUpsampleLayer makes
    them, so the exported graph has one image input."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        self.taps = taps * conv.deform_groups
        self.offset = torch.nn.Conv2d(
            conv.in_channels,
            3 * self.taps,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation)
        torch.nn.init.normal_(self.offset.weight, std=0.5)

    def forward(self, x):
        om = self.offset(x)
        offset, mask = om[:, :2 * self.taps], om[:, 2 * self.taps:].sigmoid()
        return modulated_deform_conv2d_onnx(x, offset, mask,
                                            *conv_args(self.conv))


@pytest.mark.parametrize('case', [CASES[0], CASES[2], CASES[3]])
def test_exports_to_standard_ops_without_loop(case):
    b, cin, cout, h, w, k, s, p, d, groups, dg, bias = case
    conv = seeded_deform_conv(cin, cout, k, s, p, d, groups, dg, bias, seed=1)
    module = _Conv(conv).eval()
    x = torch.randn(b, cin, h, w)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module, (x, ),
            buffer,
            input_names=['x'],
            output_names=['y'],
            opset_version=17,
            dynamo=False,
            dynamic_axes={'x': {
                2: 'h',
                3: 'w'
            }})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {'Loop', 'Scan', 'If', 'ScatterND', 'ScatterElements'}
    assert 'Gather' in ops and 'MatMul' in ops
    assert all(node.domain in ('', 'ai.onnx') for node in model.graph.node)
    session = ort.InferenceSession(
        buffer.getvalue(), providers=['CPUExecutionProvider'])
    # The exported size and another one: sizes are read from the input.
    for size in [(h, w), (h + 3, w + 5)]:
        x = torch.randn(b, cin, *size)
        with torch.no_grad():
            expected = module(x)
        (actual, ) = session.run(None, {'x': x.numpy()})
        assert_rel_close(torch.from_numpy(np.asarray(actual)), expected)
