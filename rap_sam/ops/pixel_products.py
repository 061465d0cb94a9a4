"""Products of a few vectors with every pixel of a feature map.

The decoder's passes over the stride-4 map (67,200 pixels at 800x1344) are
products with one tall side and a few vectors on the other: mask logits
(``q . f_p`` at every pixel) and pooling under a mask (``sum_p f_p`` over
the pixels where a mask is on). Two layouts of the work are faster than the
``einsum`` that states them, for pixel-major (channels-last) maps and a few
queries, as with prompts:

- logits as one product of the vectors with the pixel rows,
  ``[N, C] x [C, P]`` (the rows transposed, a view): it writes the
  ``[N, P]`` layout of the result directly. Measured on a 2-core Xeon
  (torch 2.13, 1 thread, P = 128 x 216, C = 128): 2.0 ms for 8 vectors
  against 5.5 ms for the tall product ``[P, C] x [C, N]`` and its
  transposed copy; the same for one vector;
- pooling under a binary mask as a gather of the masked pixels' rows
  (``embedding_bag``, split in as many bags as threads): it reads only the
  pixels under the mask, where the dense product reads every pixel and
  multiplies most of them by zero.

Results are the same sums up to float rounding
(``tests/test_ops/test_pixel_products.py``).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

#: Above this many vectors the dense products are used (they read the map
#: once for all vectors).
MAX_VECTORS = 16


def _few(n: int, maps: Tensor) -> bool:
    return n <= MAX_VECTORS and maps.is_contiguous(
        memory_format=torch.channels_last)


def _pixel_rows(maps: Tensor) -> Tensor:
    """``[B, C, H, W]`` channels-last -> ``[B, H * W, C]`` (a view)."""
    b, c, h, w = maps.shape
    return maps.permute(0, 2, 3, 1).reshape(b, h * w, c)


def pixel_products(vectors: Tensor, maps: Tensor) -> Tensor:
    """``vectors`` ``[B, N, C]`` dotted with every pixel of ``maps``
    ``[B, C, H, W]``: ``[B, N, H, W]``, contiguous."""
    b, c, h, w = maps.shape
    n = vectors.shape[1]
    if not _few(n, maps):
        return torch.einsum('bnc,bchw->bnhw', vectors, maps)
    return torch.matmul(vectors,
                        _pixel_rows(maps).transpose(1, 2)).view(b, n, h, w)


def weighted_pixel_sums(weights: Tensor, maps: Tensor) -> Tensor:
    """The pixels of ``maps`` ``[B, C, H, W]`` summed with each of
    ``weights`` ``[B, N, H, W]``: ``[B, N, C]``."""
    if not _few(weights.shape[1], maps):
        return torch.einsum('bnhw,bchw->bnc', weights, maps)
    return torch.matmul(weights.flatten(2), _pixel_rows(maps))


def masked_pixel_sums(masks: Tensor, maps: Tensor) -> Tensor:
    """The pixels of ``maps`` ``[B, C, H, W]`` summed where each of
    ``masks`` (bool ``[B, N, H, W]``) is on: ``[B, N, C]``."""
    b, c, h, w = maps.shape
    n = masks.shape[1]
    if not _few(n, maps) or maps.requires_grad:
        return torch.einsum('bnhw,bchw->bnc', masks.to(maps.dtype), maps)
    # Each mask's pixels in `parts` bags: embedding_bag runs bags in
    # parallel.
    parts = max(torch.get_num_threads(), 1)
    if b * n == 1:
        # One mask (a click): the same bags without the per-mask
        # bookkeeping (a third of the calls; the same sums).
        index = masks.reshape(-1).nonzero().view(-1)
        offsets = torch.tensor([len(index) * k // parts for k in range(parts)],
                               device=maps.device)
    else:
        rows, pixels = masks.reshape(b * n, h * w).nonzero(as_tuple=True)
        # Row of pixel p of image i in the table [B * H * W, C].
        index = pixels + (rows // n) * (h * w)
        counts = torch.bincount(rows, minlength=b * n)
        starts = counts.cumsum(0) - counts
        offsets = (starts[:, None] + counts[:, None] *
                   torch.arange(parts, device=maps.device) // parts).flatten()
    sums = F.embedding_bag(
        index, _pixel_rows(maps).reshape(b * h * w, c), offsets, mode='sum')
    return sums.view(b, n, parts, c).sum(2)
