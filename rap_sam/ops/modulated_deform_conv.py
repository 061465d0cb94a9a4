"""Modulated deformable convolution (DCNv2) as one gather and one GEMM.

mmcv's CPU kernel for ``ModulatedDeformConv2d`` fills its im2col buffer one
scalar at a time on a single thread; at RAP-SAM's neck sizes that is most of
the neck's time on a CPU. The same computation is

1. one gather: every tap of every output position (``kh * kw`` taps) is
   the weighted sum of four input pixels, its bilinear weights times its
   modulation; with the input as a channels-last table of pixel rows that
   is exactly ``torch.nn.functional.embedding_bag(mode='sum')`` with
   per-sample weights (a fused, vectorised, multi-threaded kernel), and it
   writes the channels-last im2col matrix ``[B * Ho * Wo, kh * kw * C]``;
2. one matrix product with the weight ``[Cout, kh * kw * C]``, which gives
   the output in channels-last memory.

With stride 1, no groups and fewer output than input channels (each step
of RAP-SAM's neck halves them) the two are swapped: every input pixel is
projected by every tap's weights first, and each output gathers the
projections of its taps' neighbours, ``Cout`` numbers per row instead of
``C`` (same multiply-adds, less memory traffic).

Sampling semantics are mmcv's: a tap at ``(h, w) = (ho * stride - pad + i *
dilation + dy, wo * stride - pad + j * dilation + dx)`` reads the bilinear
interpolation of the four neighbouring pixels, a neighbour outside the image
counting as zero (so a tap at or beyond one pixel outside reads 0).
Offsets are laid
out as mmcv's: per deformable group, per tap ``(dy, dx)``; the mask per
deformable group, per tap. The result matches mmcv's op to float rounding
(``tests/test_ops/test_modulated_deform_conv.py``).

It runs on any device and dtype that ``embedding_bag`` and ``matmul``
accept;
:func:`modulated_deform_conv2d` uses mmcv's CUDA kernel on GPUs unless told
otherwise.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from rap_sam.utils.user_errors import UserError

IntPair = Union[int, Tuple[int, int]]

#: The implementations :func:`modulated_deform_conv2d` dispatches to:
#: ``'auto'`` (mmcv's kernel on CUDA, gather + GEMM elsewhere), ``'torch'``
#: (gather + GEMM everywhere), ``'mmcv'`` (mmcv's kernel everywhere, as the
#: reference code) and ``'onnx'`` (standard ONNX operators only, for export:
#: :func:`rap_sam.ops.onnx_deform_conv.modulated_deform_conv2d_onnx`). Each
#: layer holds its own choice (``DeformUpsampleLayer(dcn_impl=...)``, config
#: key ``model.neck.dcn_impl``); nothing here is process-wide.
DCN_IMPLS = ('auto', 'torch', 'mmcv', 'onnx')


class DeformConvImplError(UserError, ValueError):
    """An unknown deformable-conv implementation name."""


def check_deform_conv_impl(impl: str) -> str:
    """``impl`` if it names an implementation, else
    :class:`DeformConvImplError`."""
    if impl not in DCN_IMPLS:
        raise DeformConvImplError(
            f'dcn_impl must be one of {", ".join(DCN_IMPLS)}; got {impl!r}.')
    return impl


def use_mmcv_kernel(x: Tensor, impl: str = 'auto') -> bool:
    """Whether :func:`modulated_deform_conv2d` calls mmcv for ``x``."""
    check_deform_conv_impl(impl)
    return impl == 'mmcv' or (impl == 'auto' and x.is_cuda)


def deform_sampling(x: Tensor,
                    offset: Tensor,
                    mask: Optional[Tensor],
                    kernel_size: IntPair,
                    stride: IntPair,
                    padding: IntPair,
                    dilation: IntPair,
                    deform_groups: int,
                    table_channels: Optional[int] = None):
    """Where every deformed tap reads and with which weights.

    Written with tensor sizes and out-of-place arithmetic only (no tensors
    built from sizes, no in-place ops), so that the ONNX version
    (:mod:`rap_sam.ops.onnx_deform_conv`) traces it with dynamic heights
    and widths; eager, it costs the same as an in-place version (the
    sampling tensors are small beside the GEMM).

    ``table_channels`` is ``C``, given when tracing (a traced size is not
    an int).

    Returns:
        tuple: ``index`` and ``weights`` ``[B, Ho, Wo, taps, dg, 4]`` (the
        four bilinear neighbours as rows of ``table``, their bilinear
        weights times the modulation; 0 for a neighbour outside the image)
        and ``table``, the input as rows ``[B * H * W * dg, C / dg]``.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    b, _, h, w = x.shape
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    dg = deform_groups
    c = x.shape[1] if table_channels is None else table_channels
    if c % dg:
        raise ValueError(f'{c} channels do not split into {dg} groups')
    if not torch.jit.is_tracing() and offset.shape[1] != dg * 2 * taps:
        raise ValueError(f'offset needs {dg * 2 * taps} channels, got '
                         f'{offset.shape[1]}')

    # Sampling positions in pixels, ordered (b, ho, wo, tap, group) so the
    # gathered rows come out in the channels-last im2col layout. Computed
    # in float32 whatever the input dtype, as mmcv adds the integer base
    # position and the offset in the offset's precision.
    dev = offset.device
    # [B, dg, taps, 2, Ho, Wo] -> (dy, dx) each [B, Ho, Wo, taps, dg].
    off = offset.float().reshape(b, dg, taps, 2, ho,
                                 wo).permute(3, 0, 4, 5, 2, 1)
    tap_y = torch.arange(kh, device=dev).view(kh, 1).expand(kh, kw)
    tap_x = torch.arange(kw, device=dev).view(1, kw).expand(kh, kw)
    base_y = (torch.arange(ho, device=dev) * sh - ph).view(ho, 1) + \
        (tap_y * dh).reshape(1, taps)  # [Ho, taps]
    base_x = (torch.arange(wo, device=dev) * sw - pw).view(wo, 1) + \
        (tap_x * dw).reshape(1, taps)  # [Wo, taps]
    y = off[0] + base_y.float().view(1, ho, 1, taps, 1)
    x_ = off[1] + base_x.float().view(1, 1, wo, taps, 1)
    # A neighbour outside the image reads zero (its weight becomes 0 and
    # its row index is clamped into the image, so the input needs no
    # zero border: one copy less, and the project-first GEMM projects only
    # real pixels). Positions are clamped into [-1, size] (outside that
    # band every neighbour is outside, and a clamped position still has
    # only outside neighbours with non-zero weight), and the low neighbour
    # to size - 1 (its weight is then 0).
    y = y.clamp(-1, h)
    x_ = x_.clamp(-1, w)
    y0 = y.floor().clamp(max=h - 1)
    x0 = x_.floor().clamp(max=w - 1)
    ly = y - y0
    lx = x_ - x0
    # Weight 0 for the rows and columns outside: y0 = -1, y0 + 1 = h.
    hy = (1 - ly) * (y0 >= 0).to(ly.dtype)
    ly = ly * (y0 < h - 1).to(ly.dtype)
    hx = (1 - lx) * (x0 >= 0).to(lx.dtype)
    lx = lx * (x0 < w - 1).to(lx.dtype)
    if mask is not None:
        m = mask.float().reshape(b, dg, taps, ho, wo).permute(0, 3, 4, 2, 1)
        hy = hy * m
        ly = ly * m
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=-1)
    # Row of pixel (b, y, x), group g, in the table [B * H * W * dg, C / dg];
    # outside neighbours clamped to a pixel inside (weight 0).
    y0 = y0.long()
    x0 = x0.long()
    row_lo = y0.clamp(min=0) * w
    row_hi = (y0 + 1).clamp(max=h - 1) * w
    col_lo = x0.clamp(min=0)
    col_hi = (x0 + 1).clamp(max=w - 1)
    index = torch.stack(
        [row_lo + col_lo, row_lo + col_hi, row_hi + col_lo, row_hi + col_hi],
        dim=-1) + (torch.arange(b, device=dev) *
                   (h * w)).view(b, 1, 1, 1, 1, 1)
    index = index * dg
    if dg > 1:
        index = index + torch.arange(dg, device=dev).view(dg, 1)
    # A view when x is channels-last.
    table = x.permute(0, 2, 3, 1).reshape(-1, c // dg)
    return index, weights.to(table.dtype), table


def deform_im2col(x: Tensor,
                  offset: Tensor,
                  mask: Optional[Tensor] = None,
                  kernel_size: IntPair = 3,
                  stride: IntPair = 1,
                  padding: IntPair = 0,
                  dilation: IntPair = 1,
                  deform_groups: int = 1) -> Tensor:
    """The modulated bilinear samples of ``x`` at every deformed tap.

    Args:
        x (Tensor): ``[B, C, H, W]`` (channels-last memory saves a copy).
        offset (Tensor): ``[B, dg * 2 * kh * kw, Ho, Wo]``, ``(dy, dx)`` per
            tap, as mmcv lays them out.
        mask (Tensor, optional): ``[B, dg * kh * kw, Ho, Wo]`` modulation.

    Returns:
        Tensor: ``[B * Ho * Wo, kh * kw * C]``, row ``(b, ho, wo)``, column
        ``(tap, c)`` (channels-last im2col).
    """
    index, weights, table = deform_sampling(x, offset, mask, kernel_size,
                                            stride, padding, dilation,
                                            deform_groups)
    cols = F.embedding_bag(
        index.view(-1, 4),
        table,
        mode='sum',
        per_sample_weights=weights.view(-1, 4))
    ho, wo = offset.shape[-2:]
    return cols.view(x.shape[0] * ho * wo, -1)


def _deform_conv_project_first(x: Tensor, offset: Tensor, mask: Tensor,
                               weight: Tensor, bias: Optional[Tensor],
                               padding: IntPair, dilation: IntPair) -> Tensor:
    """Stride 1, one group, one deformable group: every input pixel is
    projected by every tap's weights first (one GEMM, ``[pixels, C] x [C,
    taps * Cout]``), then each output sums its taps' bilinear neighbours
    of those projections (one gather of ``taps * 4`` rows of ``Cout``).
    The same multiply-adds as im2col + GEMM; with ``Cout < C`` (the neck
    halves its channels at each step) less memory is written and read."""
    cout, c, kh, kw = weight.shape
    taps = kh * kw
    b = x.shape[0]
    ho, wo = offset.shape[-2:]
    index, weights, table = deform_sampling(x, offset, mask, (kh, kw), 1,
                                            padding, dilation, 1)
    # [C, taps * Cout], column (tap, cout): a view of a weight stored as
    # [C, kh, kw, Cout] (see :func:`gemm_weight_layout`), else a copy.
    w = weight.to(table.dtype).permute(1, 2, 3, 0).reshape(c, taps * cout)
    projected = (table @ w).view(-1, cout)
    tap = torch.arange(taps, device=x.device).view(taps, 1, 1)
    rows = index * taps + tap  # row (pixel, tap) of `projected`
    out = F.embedding_bag(
        rows.view(b * ho * wo, taps * 4),
        projected,
        mode='sum',
        per_sample_weights=weights.view(b * ho * wo, taps * 4))
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.view(b, ho, wo, cout).permute(0, 3, 1, 2)


def gemm_weight_layout(weight: Tensor) -> Tensor:
    """``weight`` ``[Cout, C, kh, kw]`` with the same values, stored as
    ``[C, kh, kw, Cout]``: the matrix ``[C, kh * kw * Cout]`` that
    :func:`modulated_deform_conv2d_torch` projects with when it projects
    first, read without a per-call transpose (for the neck's first step a
    copy of 18 MB that cannot stream, as long as a cheap step). Any
    other layout gives the same results."""
    return weight.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)


def modulated_deform_conv2d_torch(x: Tensor,
                                  offset: Tensor,
                                  mask: Tensor,
                                  weight: Tensor,
                                  bias: Optional[Tensor] = None,
                                  stride: IntPair = 1,
                                  padding: IntPair = 0,
                                  dilation: IntPair = 1,
                                  groups: int = 1,
                                  deform_groups: int = 1) -> Tensor:
    """mmcv's ``modulated_deform_conv2d`` as a gather and a GEMM.

    Args:
        x (Tensor): ``[B, C, H, W]``.
        offset (Tensor): ``[B, dg * 2 * kh * kw, Ho, Wo]``.
        mask (Tensor): ``[B, dg * kh * kw, Ho, Wo]`` (already activated).
        weight (Tensor): ``[Cout, C / groups, kh, kw]``.
        bias (Tensor, optional): ``[Cout]``.

    Returns:
        Tensor: ``[B, Cout, Ho, Wo]`` in channels-last memory.
    """
    cout, cin_g, kh, kw = weight.shape
    b, c = x.shape[:2]
    ho, wo = offset.shape[-2:]
    taps = kh * kw
    if c != cin_g * groups:
        raise ValueError(f'input has {c} channels, the weight expects '
                         f'{cin_g} x {groups} groups')
    if groups == 1 and deform_groups == 1 and _pair(stride) == (1, 1) \
            and cout <= c:
        return _deform_conv_project_first(x, offset, mask, weight, bias,
                                          padding, dilation)
    cols = deform_im2col(x, offset, mask, (kh, kw), stride, padding, dilation,
                         deform_groups)
    # [Cout, C / G, kh, kw] -> per group [Cout / G, taps * C / G], (tap, c).
    w = weight.to(cols.dtype).view(groups, cout // groups, cin_g,
                                   taps).transpose(2, 3)
    if bias is not None:
        bias = bias.to(cols.dtype)
    if groups == 1:
        w = w.reshape(cout, taps * c)
        out = cols @ w.t() if bias is None else torch.addmm(bias, cols, w.t())
    else:
        cols = cols.view(-1, taps, groups, cin_g)
        out = torch.cat([
            cols[:, :, g].reshape(-1, taps * cin_g) @ w[g].reshape(
                cout // groups, -1).t() for g in range(groups)
        ],
                        dim=1)
        if bias is not None:
            out = out + bias
    return out.view(b, ho, wo, cout).permute(0, 3, 1, 2)


def modulated_deform_conv2d(x: Tensor,
                            offset: Tensor,
                            mask: Tensor,
                            weight: Tensor,
                            bias: Optional[Tensor] = None,
                            stride: IntPair = 1,
                            padding: IntPair = 0,
                            dilation: IntPair = 1,
                            groups: int = 1,
                            deform_groups: int = 1,
                            impl: str = 'auto') -> Tensor:
    """Modulated deformable conv through implementation ``impl`` (one of
    :data:`DCN_IMPLS`)."""
    if impl == 'onnx':
        # Imported on use: only export needs it.
        from .onnx_deform_conv import modulated_deform_conv2d_onnx
        return modulated_deform_conv2d_onnx(x, offset, mask, weight, bias,
                                            stride, padding, dilation, groups,
                                            deform_groups)
    if use_mmcv_kernel(x, impl):
        # mmcv casts everything to the offset's dtype itself (autocast).
        from mmcv.ops import modulated_deform_conv2d as mmcv_dcn
        return mmcv_dcn(x, offset, mask, weight, bias, stride, padding,
                        dilation, groups, deform_groups)
    return modulated_deform_conv2d_torch(x, offset, mask, weight, bias, stride,
                                         padding, dilation, groups,
                                         deform_groups)
