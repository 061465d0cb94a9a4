"""The neck's output map, kept as the 1x1 conv that would make it.

The neck ends in a 1x1 conv (``loc_conv``) from the aggregated map ``g``
(``C'`` channels) and two coordinate channels to ``C`` channels:
``f_p = W [g_p; x_p; y_p] + b``. Everything the decoder does with the map is
one of two products with the pixel vectors:

- projections ``q . f_p`` (mask logits, attention scores), equal to
  ``(W_g^T q) . g_p + (w_x . q) x_p + (w_y . q) y_p + q . b``;
- weighted sums ``sum_p a_p f_p`` (mask pooling, attention context), equal
  to ``W_g (sum_p a_p g_p) + w_x sum_p a_p x_p + w_y sum_p a_p y_p +
  b sum_p a_p``.

Both read ``g`` (128 channels in the released model) instead of ``f`` (256):
half the bytes per pass over the map, and ``f`` itself is never computed
(the 1x1 conv over the stride-4 map and its copy with the coordinates are
skipped). The coordinate terms are rank-one in ``x`` and ``y``, so they cost
a broadcast add. The results equal the dense map's to float rounding
(``tests/test_models/test_low_rank_feature_map.py``).

:func:`project` and :func:`weighted_sum` accept either a dense ``[B, C, H,
W]`` tensor or a :class:`LowRankFeatureMap`, so the decoder has one code path.

A few vectors at a time (prompts: a click is one query, the prompt
adapter eight) are taken against the map's pixel table ``[g_p; x_p; y_p;
1]`` (``C' + 3`` columns, made once per map and kept with it): a
projection is then one product ``(W_aug^T q) . [g_p; x_p; y_p; 1]`` and a
(masked) sum one pass that yields ``sum a g``, ``sum a x``, ``sum a y`` and
``sum a`` together, with no coordinate terms added over the map
afterwards (two passes per projection, two per sum, each a small
operation whose call costs more than its arithmetic at a click's size).
The same sums in another order (float rounding). A bf16 or fp16 map on a
CPU goes through the table for any number of vectors (see
:meth:`LowRankFeatureMap._use_table`).
"""
from numbers import Integral
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from rap_sam.ops.pixel_products import (MAX_VECTORS, masked_pixel_sums,
                                        pixel_products, weighted_pixel_sums)


def coordinate_channels(h: int, w: int, like: Tensor) -> Tuple[Tensor, Tensor]:
    """The neck's coordinate channels, ``x`` (``[w]``) and ``y``
    (``[h]``), each spanning -1..1."""
    xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
    ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
    return xs, ys


def with_coordinates(x: Tensor) -> Tensor:
    """``[B, C', H, W]`` -> ``[B, C' + 2, H, W]``: the x and y channels
    appended, as the neck feeds its last 1x1 conv."""
    b, _, h, w = x.shape
    xs, ys = coordinate_channels(h, w, x)
    coords = torch.stack(torch.meshgrid(xs, ys, indexing='xy'))
    return torch.cat([x, coords.expand(b, -1, -1, -1)], dim=1)


class LowRankFeatureMap:
    """``loc_conv([g; x; y])`` without computing it.

    Args:
        basis (Tensor): ``g``, ``[B, C', H, W]``.
        weight (Tensor): the 1x1 conv's weight ``[C, C' + 2]`` (``g``'s
            channels, then ``x``, then ``y``).
        bias (Tensor): ``[C]``.
    """

    def __init__(self, basis: Tensor, weight: Tensor, bias: Tensor):
        if weight.shape[1] != basis.shape[1] + 2:
            raise ValueError(f'a {tuple(weight.shape)} weight does not map '
                             f'{basis.shape[1]} channels and 2 coordinates')
        self.basis = basis
        self.weight = weight
        self.bias = bias
        self._cache = {}

    #: Whether products with a few vectors go through the pixel table
    #: (:meth:`pixel_table`); False keeps the basis with the coordinate
    #: terms added over the map (the path before the table, kept for
    #: comparisons).
    use_pixel_table = True

    @property
    def shape(self) -> torch.Size:
        b, _, h, w = self.basis.shape
        return torch.Size((b, self.weight.shape[0], h, w))

    @property
    def device(self) -> torch.device:
        return self.basis.device

    @property
    def dtype(self) -> torch.dtype:
        return self.basis.dtype

    def float(self) -> 'LowRankFeatureMap':
        """The map in fp32 (itself if it is); made once per map."""
        if self.basis.dtype == torch.float32:
            return self
        return self._cached(
            'float32',
            lambda: LowRankFeatureMap(self.basis.float(), self.weight.float(),
                                      self.bias.float()))

    def __getitem__(self, index) -> 'LowRankFeatureMap':
        """The maps ``index`` picks from the batch, as ``[B, C, H, W]``
        tensor indexing picks them (``feats[t:t + 1]`` is frame ``t`` of a
        clip's map).

        Args:
            index (slice | list | Tensor): Batch entries; a slice or a
                sequence of indices, so the result keeps four dimensions
                (a single int would drop the batch one, which a map cannot
                do).
        """
        self._check_batch_index(index)
        return LowRankFeatureMap(self.basis[index], self.weight, self.bias)

    def _cached(self, key: str, make):
        """What ``make()`` returns, computed once per map: a map is decoded
        many times (every click on an image), its coordinates and weights
        stay."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @staticmethod
    def _check_batch_index(index) -> None:
        if isinstance(index, (Integral, tuple)) or index is None or \
                index is Ellipsis or (isinstance(index, Tensor)
                                      and index.dim() != 1):
            raise TypeError('a LowRankFeatureMap is indexed along its batch '
                            'with a slice or a 1-D sequence of indices '
                            f'(e.g. feats[t:t + 1]), got {index!r}')

    def _augmented_weight(self) -> Tensor:
        """``[W_g, w_x, w_y, b]``, ``[C, C' + 3]``: one product with the
        queries gives every term of a projection."""
        return self._cached(
            'weight', lambda: torch.cat([self.weight, self.bias[:, None]], 1))

    def _coords(self) -> Tuple[Tensor, Tensor]:
        return self._cached(
            'coords',
            lambda: coordinate_channels(*self.basis.shape[-2:], self.basis))

    def pixel_table(self) -> Tensor:
        """``[g_p; x_p; y_p; 1]`` for every pixel, ``[B, C' + 3, H, W]``
        channels-last (so pixel ``p``'s ``C' + 3`` values are one row of
        ``[B, H * W, C' + 3]``); made once per map."""
        return self._cached('pixel_table', self._make_pixel_table)

    def pixel_columns(self) -> Tensor:
        """The pixel table channel-major (``[B, C' + 3, H, W]``
        contiguous), for products with a few vectors; made once per map.

        A projection or weighted sum then reads one ``[C' + 3, H * W]``
        matrix along its rows, the layout matrix libraries stream best;
        the pixel rows serve the gathers under a mask. On a 2-core AMD
        EPYC (Zen 4, MKL) one vector's projection at 800x1344 took 1.9 ms
        on the columns against 6.5 ms on the rows.
        """
        return self._cached('pixel_columns',
                            lambda: self.pixel_table().contiguous())

    def _make_pixel_table(self) -> Tensor:
        b, c, h, w = self.basis.shape
        xs, ys = self._coords()
        coords = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), -1)
        rows = torch.cat([
            self.basis.permute(0, 2, 3, 1),
            coords.expand(b, -1, -1, -1),
            self.basis.new_ones(b, h, w, 1)
        ], -1)
        return rows.permute(0, 3, 1, 2)

    def _use_table(self, num_vectors: int) -> bool:
        if not self.use_pixel_table or self.basis.requires_grad or \
                torch.jit.is_tracing():
            return False
        # Many vectors (the image decoder's 100 queries) too where the map
        # is bf16 / fp16 on a CPU: there a product with the channels-last
        # basis, [N, C'] x [C', H * W], copies it to channel-major at
        # every call (oneDNN's reduced-precision matrix product takes no
        # transposed operand; fp32's does), five times per image, and the
        # coordinate terms are two more passes over the [N, H, W] logits.
        # With the table (channel-major once per map) the image decoder
        # took 105 ms in bf16 against 227 ms (2-core Intel Xeon with AMX,
        # 800x1344); in fp32 the copies made it slower.
        reduced_on_cpu = (
            self.basis.dtype != torch.float32
            and self.basis.device.type == 'cpu')
        return num_vectors <= MAX_VECTORS or reduced_on_cpu

    def dense(self) -> Tensor:
        """The map itself, ``[B, C, H, W]``, as the neck computes it."""
        return F.conv2d(
            with_coordinates(self.basis), self.weight[:, :, None, None],
            self.bias)

    def _projection_terms(self,
                          queries: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """A projection's parts: the queries in the basis' space ``[B, N,
        C']`` and its rank-one coordinate terms, a row ``[B, N, W]`` and a
        column ``[B, N, H]`` (the constant ``q . b`` rides on the row)."""
        c = self.weight.shape[1] - 2
        # [W_g^T q, w_x . q, w_y . q, q . b] in one product.
        terms = queries @ self._augmented_weight()
        xs, ys = self._coords()
        row = terms[..., c, None] * xs + terms[..., c + 2, None]
        col = terms[..., c + 1, None] * ys
        return terms[..., :c], row, col

    def project(self, queries: Tensor) -> Tensor:
        """``[B, N, C]`` -> ``[B, N, H, W]``: ``q . f_p`` at every pixel."""
        if self._use_table(queries.shape[1]):
            return pixel_products(queries @ self._augmented_weight(),
                                  self.pixel_columns())
        q_basis, row, col = self._projection_terms(queries)
        out = pixel_products(q_basis, self.basis)
        return out.add_(row[:, :, None, :]).add_(col[:, :, :, None])

    def weighted_sum(self, weights: Tensor) -> Tensor:
        """``[B, N, H, W]`` -> ``[B, N, C]``: ``sum_p a_p f_p``."""
        if self._use_table(weights.shape[1]):
            return weighted_pixel_sums(
                weights, self.pixel_columns()) @ self._augmented_weight().t()
        return self._sum(weighted_pixel_sums(weights, self.basis), weights)

    def softmax_pool(self, vectors: Tensor) -> Tensor:
        """``[B, N, C]`` -> ``[B, N, C]``: ``sum_p a_p f_p`` with ``a`` the
        softmax over the pixels of ``q . f_p``, for each vector ``q``.

        A few vectors go through PyTorch's fused attention on the pixel
        rows: scores, softmax and weighted sum in one pass over the map
        (blocks of pixels with a running maximum), where a projection, a
        softmax and a weighted sum are two passes and a score map written
        and read. The pixels are split in as many parts as threads, each
        part attended to by all the vectors (the fused kernel runs a part
        per thread, and its products are wider with every vector in
        them), and the parts' results are merged by their log-sum-exps.
        The same sums in another order (float rounding).
        """
        n = vectors.shape[1]
        if not self._use_table(n):
            return _softmax_pool_in_two_passes(self, vectors)
        rows = self.pixel_table().permute(0, 2, 3, 1).flatten(1, 2)
        queries = vectors @ self._augmented_weight()
        pooled = _attend_in_parts(queries, rows, torch.get_num_threads())
        return pooled @ self._augmented_weight().t()

    def masked_sum(self, masks: Tensor) -> Tensor:
        """Bool ``[B, N, H, W]`` -> ``[B, N, C]``: the pixels under each
        mask summed."""
        if self._use_table(masks.shape[1]):
            return self._masked_basis_sum(
                masks, 'table') @ self._augmented_weight().t()
        return self._sum(self._masked_basis_sum(masks), masks.to(self.dtype))

    def _masked_basis_sum(self, masks: Tensor, of: str = 'basis') -> Tensor:
        """``sum_p m_p g_p``, ``[B, N, C']`` (``of='table'``: the pixel
        table's rows summed, ``[B, N, C' + 3]``).

        A few masks are summed by gathering the pixels under them
        (:func:`masked_pixel_sums`), which costs what they cover. A mask
        over more than half the map is the map's total (once per map)
        minus the pixels off it: the same sum, and never more than half
        the map gathered (a click's first masks often cover most of it).
        """
        b, n, h, w = masks.shape
        basis = self.pixel_table() if of == 'table' else self.basis
        if n > MAX_VECTORS or basis.requires_grad or \
                not basis.is_contiguous(memory_format=torch.channels_last) \
                or torch.jit.is_tracing():
            return masked_pixel_sums(masks, basis)
        on = masks.sum((2, 3))  # [B, N]
        flip = on * 2 > h * w
        flipped = bool(flip.any())
        if flipped:
            masks = masks ^ flip[..., None, None]
        if bool((torch.where(flip, h * w - on, on) > 0).any()):
            pooled = masked_pixel_sums(masks, basis)
        else:  # every mask empty or full: nothing to gather
            pooled = basis.new_zeros(b, n, basis.shape[1])
        if not flipped:
            return pooled
        total = self._cached(f'{of}_total', lambda: basis.sum((2, 3)))
        return torch.where(flip[..., None], total[:, None] - pooled, pooled)

    def _sum(self, pooled_basis: Tensor, weights: Tensor) -> Tensor:
        xs, ys = self._coords()
        along_w = weights.sum(2)  # [B, N, W]
        along_x = along_w @ xs  # [B, N]
        along_y = weights.sum(3) @ ys
        total = along_w.sum(2)
        # [sum a g, sum a x, sum a y, sum a] through [W_g, w_x, w_y, b].
        stats = torch.cat([
            pooled_basis, along_x[..., None], along_y[..., None], total[...,
                                                                        None]
        ], -1)
        return stats @ self._augmented_weight().t()


FeatureMap = Union[Tensor, LowRankFeatureMap]

# The CPU flash-attention kernel, which returns each query's log-sum-exp
# beside its output (the public scaled_dot_product_attention drops it).
_flash_attention = getattr(torch.ops.aten,
                           '_scaled_dot_product_flash_attention_for_cpu', None)


def _attend_in_parts(queries: Tensor, rows: Tensor, parts: int) -> Tensor:
    """Softmax attention of ``queries`` ``[B, N, D]`` over ``rows`` ``[B,
    P, D]`` (keys and values alike, scale 1): ``[B, N, D]``.

    The rows are split in ``parts`` runs of pixels (fewer where ``P`` does
    not divide), attended to separately and merged: part ``k``'s output
    weighted by ``exp(lse_k - lse)``, ``lse`` the log-sum-exp over all
    pixels. Without a split (one part, no CPU kernel) the queries are
    split in groups instead, each group attending to all pixels.
    """
    b, p, d = rows.shape
    n = queries.shape[1]
    wanted = max(1, parts)
    parts = min(wanted, p)
    while p % parts:
        parts -= 1
    if parts == 1 or _flash_attention is None or rows.device.type != 'cpu':
        groups = min(wanted, n)
        while n % groups:
            groups -= 1
        keys = rows[:, None].expand(-1, groups, -1, -1)
        return F.scaled_dot_product_attention(
            queries.view(b, groups, -1, d), keys, keys,
            scale=1.0).reshape(b, n, d)
    keys = rows.reshape(b * parts, 1, p // parts, d)
    split = queries[:, None].expand(-1, parts, -1,
                                    -1).reshape(b * parts, 1, n, d)
    out, lse = _flash_attention(split, keys, keys, scale=1.0)[:2]
    weights = lse.view(b, parts, n).float().softmax(1)
    merged = (out.view(b, parts, n, d).float() * weights[..., None]).sum(1)
    return merged.to(out.dtype)


def dense(features: FeatureMap) -> Tensor:
    """The map as a tensor ``[B, C, H, W]``."""
    if isinstance(features, LowRankFeatureMap):
        return features.dense()
    return features


def project(features: FeatureMap, queries: Tensor) -> Tensor:
    """Queries ``[B, N, C]`` dotted with every pixel: ``[B, N, H, W]``."""
    if isinstance(features, LowRankFeatureMap):
        return features.project(queries)
    return pixel_products(queries, features)


def weighted_sum(features: FeatureMap, weights: Tensor) -> Tensor:
    """Pixels summed with weights ``[B, N, H, W]``: ``[B, N, C]``."""
    if isinstance(features, LowRankFeatureMap):
        return features.weighted_sum(weights)
    return weighted_pixel_sums(weights, features)


def softmax_pool(features: FeatureMap, vectors: Tensor) -> Tensor:
    """Pixels summed with the softmax over the map of their products with
    each of ``vectors`` ``[B, N, C]``: ``[B, N, C]``."""
    if isinstance(features, LowRankFeatureMap):
        return features.softmax_pool(vectors)
    return _softmax_pool_in_two_passes(features, vectors)


def _softmax_pool_in_two_passes(features: FeatureMap,
                                vectors: Tensor) -> Tensor:
    """:func:`softmax_pool` as a projection, a softmax and a weighted sum."""
    b, n, _ = vectors.shape
    h, w = features.shape[-2:]
    weights = project(features, vectors).flatten(2).softmax(-1)
    return weighted_sum(features, weights.view(b, n, h, w))


def masked_sum(features: FeatureMap, masks: Tensor) -> Tensor:
    """Pixels summed under bool masks ``[B, N, H, W]``: ``[B, N, C]``."""
    if isinstance(features, LowRankFeatureMap):
        return features.masked_sum(masks)
    return masked_pixel_sums(masks, features)
