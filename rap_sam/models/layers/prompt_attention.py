"""Cross-attention of a few queries over a whole feature map, without
projecting the map.

The prompt adapter lets each prompt query attend to every pixel of the
stride-4 map (67,200 pixels at 800x1344). ``nn.MultiheadAttention`` first
projects all pixels to keys and values (two 256x256 products per pixel,
8.8 GMAC at that size), although a click has one query. For a head ``h``
with query ``q_h``, key weights ``W_k,h`` and value weights ``W_v,h``:

- ``q_h . (W_k,h f + b_k,h) = (W_k,h^T q_h) . f + q_h . b_k,h``; the last term
  is the same for every pixel, so the softmax drops it;
- ``sum_p a_p (W_v,h f_p + b_v,h) = W_v,h (sum_p a_p f_p) + b_v,h`` since
  the attention weights ``a`` sum to one.

So the map is read twice per head-query (scores, then the weighted sum of
pixels; once where :func:`softmax_pool` fuses them), ``2 * N * heads * C``
multiply-adds per pixel instead of ``2 * C * C``: 30x less for one click,
and no key / value copies. The result is the same attention up to float
rounding (``tests/test_models/test_layers/test_prompt_attention.py``).
With many queries (``N * heads >= C``) the projection is cheaper and is
used. The map is read through :func:`softmax_pool`, so a
:class:`LowRankFeatureMap` is read at its own (lower) width.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .low_rank_feature_map import FeatureMap, dense, softmax_pool


def _factorable(mha: nn.MultiheadAttention) -> bool:
    return (mha.in_proj_weight is not None and mha.bias_k is None
            and mha.bias_v is None and not mha.add_zero_attn
            and (mha.dropout == 0 or not mha.training))


def attend_to_feature_map(attn: nn.Module, queries: Tensor,
                          features: FeatureMap) -> Tensor:
    """mmcv ``MultiheadAttention(batch_first=True)``'s
    ``attn(queries, keys)`` (residual included) with ``keys`` the pixels of
    ``features``.

    Args:
        attn (nn.Module): mmcv's ``MultiheadAttention`` (its ``attn`` is an
            ``nn.MultiheadAttention``), ``batch_first=True``.
        queries (Tensor): ``[B, N, C]``.
        features (Tensor | LowRankFeatureMap): ``[B, C, H, W]``.

    Returns:
        Tensor: ``[B, N, C]``.
    """
    mha = attn.attn
    b, n, c = queries.shape
    heads = mha.num_heads
    if not _factorable(mha) or n * heads >= c or attn.training:
        keys = dense(features).flatten(2).transpose(1, 2)
        return attn(queries, keys)
    d = c // heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, _, b_v = mha.in_proj_bias.chunk(3)
    q = F.linear(queries, w_q, b_q) * d**-0.5
    # Queries brought to the feature space, one per head: [B, N * heads,
    # C]; per head a [B * N, d] x [d, C] product (MatMul nodes in a graph,
    # where an einsum is an Einsum node, slower on ONNX Runtime).
    q = torch.matmul(
        q.view(b * n, heads, d).transpose(0, 1), w_k.view(heads, d, c))
    q = q.transpose(0, 1).reshape(b, n * heads, c)
    context = softmax_pool(features, q)  # [B, N * heads, C]
    out = torch.matmul(
        context.view(b * n, heads, c).transpose(0, 1),
        w_v.view(heads, d, c).transpose(1, 2))  # [heads, B * N, d]
    out = out.transpose(0, 1).reshape(b, n, c) + b_v
    out = mha.out_proj(out)
    # mmcv adds the residual after its (eval-time identity) dropouts.
    return queries + attn.dropout_layer(attn.proj_drop(out))
