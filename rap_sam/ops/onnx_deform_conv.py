"""Modulated deformable convolution (DCNv2) in operators ONNX has.

:func:`rap_sam.ops.modulated_deform_conv2d_torch` gathers with
``embedding_bag``, which ``torch.onnx.export`` turns into a ``Loop`` over
the bags (one iteration per output tap: slow in every runtime), and mmcv's
op has no ONNX form at all (a custom operator). This version computes the
same thing with ops every ONNX runtime has and runs fast:

- sampling positions, bilinear weights and the input table from the
  gather + GEMM version's own :func:`deform_sampling` (which traces with
  dynamic sizes);
- each of the four bilinear neighbours is one ``Gather`` of table rows
  (``index_select``), weighted by a broadcast ``Mul`` and summed with
  ``Add``, so there is no ``Loop``, no ``ScatterND`` and no custom op;
- one ``MatMul`` with the weight.

With stride 1, one group and one deformable group every input pixel is
projected by every tap's weights first (one ``MatMul``) and the outputs
gather those projections, as the gather + GEMM version does when the conv
does not widen (the neck halves its channels at each step); the four
neighbours' gathers then read ``Cout`` instead of ``C`` numbers per row.

Spatial sizes are read from the tensors, so a graph exported with dynamic
height and width stays correct at other sizes. fp32 (float rounding aside)
gives mmcv's results: ``tests/test_ops/test_onnx_deform_conv.py``.
"""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from .modulated_deform_conv import deform_sampling

IntPair = Union[int, Tuple[int, int]]


def _weighted_rows(table: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """``sum_k weights[..., k, None] * table[index[..., k]]`` over the last
    axis of ``index`` / ``weights`` (the four bilinear neighbours), one
    ``Gather`` per neighbour so no tensor four times the output's size is
    made."""
    out = None
    for k in range(index.shape[-1]):
        rows = table.index_select(0, index[..., k].reshape(-1))
        term = rows.view(*index.shape[:-1], -1) * weights[..., k, None]
        out = term if out is None else out + term
    return out


def modulated_deform_conv2d_onnx(x: Tensor,
                                 offset: Tensor,
                                 mask: Tensor,
                                 weight: Tensor,
                                 bias: Optional[Tensor] = None,
                                 stride: IntPair = 1,
                                 padding: IntPair = 0,
                                 dilation: IntPair = 1,
                                 groups: int = 1,
                                 deform_groups: int = 1) -> Tensor:
    """mmcv's ``modulated_deform_conv2d`` with standard ONNX operators.

    Args:
        x (Tensor): ``[B, C, H, W]``.
        offset (Tensor): ``[B, dg * 2 * kh * kw, Ho, Wo]``, ``(dy, dx)`` per
            tap, as mmcv lays them out.
        mask (Tensor): ``[B, dg * kh * kw, Ho, Wo]`` (already activated).
        weight (Tensor): ``[Cout, C / groups, kh, kw]``.
        bias (Tensor, optional): ``[Cout]``.

    Returns:
        Tensor: ``[B, Cout, Ho, Wo]`` (contiguous).
    """
    # Channel counts come from the weight (plain ints, also when traced);
    # the inputs' are checked when not tracing, where they are ints too.
    cout, cin_g, kh, kw = weight.shape
    c = cin_g * groups
    taps = kh * kw
    if not torch.jit.is_tracing():
        if x.shape[1] != c:
            raise ValueError(f'input has {x.shape[1]} channels, the weight '
                             f'expects {cin_g} x {groups} groups')
        if offset.shape[1] != deform_groups * 2 * taps:
            raise ValueError(f'offset needs {deform_groups * 2 * taps} '
                             f'channels, got {offset.shape[1]}')
    b = x.shape[0]
    ho, wo = offset.shape[-2:]
    index, weights, table = deform_sampling(x, offset, mask, (kh, kw), stride,
                                            padding, dilation, deform_groups,
                                            c)
    weight = weight.to(table.dtype)
    if groups == 1 and deform_groups == 1 and _pair(stride) == (1, 1) \
            and cout <= c:
        # Project first: [pixels, C] @ [C, taps * Cout] -> rows (pixel, tap).
        w = weight.view(cout, c, taps).permute(1, 2, 0).reshape(c, -1)
        projected = (table @ w).view(-1, cout)
        tap = torch.arange(taps, device=x.device).view(taps, 1, 1)
        rows = index * taps + tap  # row (pixel, tap) of `projected`
        # [B, Ho, Wo, taps, Cout] summed over the taps.
        out = _weighted_rows(projected, rows[..., 0, :], weights[...,
                                                                 0, :]).sum(3)
    else:
        # im2col rows (b, ho, wo), columns (tap, group, C / dg).
        cols = _weighted_rows(table, index,
                              weights).reshape(b * ho * wo, taps, groups,
                                               cin_g)
        w = weight.view(groups, cout // groups, cin_g,
                        taps).permute(0, 3, 2, 1)  # [G, taps, C / G, Cout / G]
        if groups == 1:
            out = cols.reshape(-1, taps * c) @ w.reshape(taps * c, cout)
        else:
            # [G, rows, taps * C / G] @ [G, taps * C / G, Cout / G].
            out = torch.matmul(
                cols.permute(2, 0, 1, 3).reshape(groups, -1, taps * cin_g),
                w.reshape(groups, taps * cin_g, cout // groups))
            out = out.permute(1, 0, 2).reshape(-1, cout)
        out = out.view(b, ho, wo, cout)
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.permute(0, 3, 1, 2).contiguous()
