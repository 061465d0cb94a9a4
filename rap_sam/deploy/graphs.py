"""RAP-SAM as three graphs with tensor inputs and outputs, for export.

SAM-style, the image is encoded once and decoded as often as needed:

- :class:`ImageEncoder`: the normalised, padded image ``[1, 3, H, W]`` ->
  the neck's stride-4 map;
- :class:`PanopticDecoder`: the map -> ``cls_logits`` ``[1, Q, K + 1]``
  and ``mask_logits`` ``[1, Q, H/4, W/4]``, what
  :meth:`RapSAMHead.predict` returns for an image;
- :class:`PromptDecoder`: the map, ``boxes`` ``[N, 4]`` (x1, y1, x2, y2 in
  the resized image's pixels; a click is its 6-px box) and ``img_shape``
  (the resized image's ``(h, w)`` before padding, which the head
  normalises the boxes by) -> ``cls_logits`` ``[1, N, K + 1]``,
  ``mask_logits`` ``[1, N, H/4, W/4]`` and ``iou`` ``[1, N, 1]``, what
  :meth:`RapSAMHead.predict` returns for a prompt batch.

The decoders call the head itself (its own ``predict``), building from the
tensors the one data sample the head reads, so the graphs compute exactly
what the PyTorch model computes and the same post-processing
(:meth:`ScoredPanopticFusionHead.predict`, :meth:`RapSAM.add_prompt_preds`)
serves every runtime.

The map the encoder hands over is either the neck's output ``features``
(``C`` channels) or, with ``low_rank=True``, its aggregated map ``basis``
(``C'`` channels, half of ``C`` in the released model) and the decoders
apply the neck's last 1x1 conv inside their products
(:class:`rap_sam.models.layers.LowRankFeatureMap`): the same numbers to
float rounding, fewer bytes per pass over the map.
"""
import copy
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor

from rap_sam.models.layers import (LowRankFeatureMap, coordinate_channels,
                                   with_coordinates)

#: Output / input names of each graph (the encoder's depends on low_rank).
DENSE_FEATURES = 'features'
LOW_RANK_FEATURES = 'basis'
IMAGE = 'image'
BOXES = 'boxes'
IMG_SHAPE = 'img_shape'
CLS_LOGITS = 'cls_logits'
MASK_LOGITS = 'mask_logits'
IOU = 'iou'


def feature_name(low_rank: bool) -> str:
    """The name of the map the encoder outputs and the decoders read."""
    return LOW_RANK_FEATURES if low_rank else DENSE_FEATURES


class PixelRowsFeatureMap(LowRankFeatureMap):
    """The stride-4 map held as pixel rows ``[B, H, W, C]`` (channels
    last), with the neck's last 1x1 conv unapplied (``weight`` and
    ``bias``, as :class:`LowRankFeatureMap`) or already applied (both
    None).

    The head's products with the map (:func:`project`,
    :func:`masked_sum`, :func:`weighted_sum` of
    :mod:`rap_sam.models.layers.low_rank_feature_map`) are then plain
    ``MatMul`` products of ``[P, C]`` rows. The tensor versions state
    them as ``einsum`` calls over ``[B, C, H, W]``, which ONNX Runtime runs as
    ``Einsum`` nodes about ten times slower (most of a click's decode
    time).

    ``sum_parts`` > 1 splits the map's rows into that many runs of pixels
    for weighted sums (one batched ``MatMul`` and a sum of the parts): a
    product of a few weight rows with all ``P`` pixel rows is one long
    reduction, which OpenVINO and ONNX Runtime run on about one thread;
    split, the runs go to all of them. It must divide the map's height.
    """

    def __init__(self,
                 rows: Tensor,
                 weight: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None,
                 sum_parts: int = 1):
        self.sum_parts = sum_parts
        self.rows = rows
        self.weight = weight
        self.bias = bias
        self._cache = {}

    @property
    def basis(self) -> Tensor:
        """``[B, C', H, W]`` (a view)."""
        return self.rows.permute(0, 3, 1, 2)

    def __getitem__(self, index) -> 'PixelRowsFeatureMap':
        # The rows keep the batch first, so the parent's batch indexing
        # applies to them; the conv may be already applied (weight None).
        self._check_batch_index(index)
        return PixelRowsFeatureMap(self.rows[index], self.weight, self.bias,
                                   self.sum_parts)

    @property
    def shape(self) -> torch.Size:
        b, h, w, c = self.rows.shape
        if self.weight is not None:
            c = self.weight.shape[0]
        return torch.Size((b, c, h, w))

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @property
    def dtype(self) -> torch.dtype:
        return self.rows.dtype

    def _coords(self) -> Tuple[Tensor, Tensor]:
        return self._cached(
            'coords',
            lambda: coordinate_channels(*self.rows.shape[1:3], self.rows))

    def _flat(self) -> Tensor:  # [B, P, C']
        return self.rows.flatten(1, 2)

    def dense(self) -> Tensor:
        if self.weight is None:
            return self.basis
        return super().dense()

    def project(self, queries: Tensor) -> Tensor:
        b, h, w, _ = self.rows.shape
        # Queries first: the product comes out as [B, N, P], the layout of
        # the masks, and ONNX Runtime reads the rows as the transposed
        # operand of one MatMul (no [P, N] result to transpose: a copy per
        # projection, 8 x P floats for the prompt adapter's scores).
        if self.weight is None:
            return (queries @ self._flat().transpose(1, 2)).reshape(
                b, -1, h, w)
        q_basis, row, col = self._projection_terms(queries)
        out = (q_basis @ self._flat().transpose(1, 2)).reshape(b, -1, h, w)
        return out + row[:, :, None, :] + col[:, :, :, None]

    def weighted_sum(self, weights: Tensor) -> Tensor:
        b, h, w, c = self.rows.shape
        parts = self.sum_parts
        if parts == 1:
            pooled = weights.flatten(2) @ self._flat()  # [B, N, C']
        else:
            rows = self.rows.reshape(b, parts, -1, c)
            split = weights.reshape(b, -1, parts, rows.shape[2])
            pooled = (split.transpose(1, 2) @ rows).sum(1)
        return pooled if self.weight is None else self._sum(pooled, weights)

    def masked_sum(self, masks: Tensor) -> Tensor:
        return self.weighted_sum(masks.to(self.dtype))


class ImageEncoder(nn.Module):
    """Backbone and neck: ``image`` ``[1, 3, H, W]`` (normalised and padded
    as the data preprocessor does) -> the stride-4 map as pixel rows
    ``[1, H/4, W/4, C]`` (``features``; low rank: ``basis``, ``C'``
    channels)."""

    def __init__(self, model: nn.Module, low_rank: bool = False):
        super().__init__()
        self.backbone = model.backbone
        self.neck = model.neck
        self.low_rank = low_rank
        self.output_names = [feature_name(low_rank)]

    def forward(self, image: Tensor) -> Tensor:
        # The neck's own parts, so the output does not depend on its
        # low_rank_output flag.
        basis = self.neck.deconv(self.backbone(image))
        if not self.low_rank:
            basis = self.neck.loc_conv(with_coordinates(basis))
        return basis.permute(0, 2, 3, 1).contiguous()


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` (sequence first, self-attention, eval) with
    the sequence length left free in a traced graph.

    PyTorch's own forward reshapes with the length read as a number, so a
    graph traced with 3 prompts fails on 1 (ONNX ``Reshape`` to a fixed
    ``[3, heads, d]``). The same computation with the length as ``-1``;
    the parameters are the wrapped module's.
    """

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if mha.in_proj_weight is None or mha.bias_k is not None or \
                mha.add_zero_attn or mha.batch_first:
            raise ValueError('only packed, sequence-first attention without '
                             'extra key / value biases is supported')
        self.mha = mha

    # The wrapped module's parameters, for the stages' shortcut when each
    # query attends to itself only (DecoderStage(isolated=True)).
    @property
    def in_proj_weight(self) -> Tensor:
        return self.mha.in_proj_weight

    @property
    def in_proj_bias(self) -> Tensor:
        return self.mha.in_proj_bias

    @property
    def out_proj(self) -> nn.Module:
        return self.mha.out_proj

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Tensor,
                attn_mask: Optional[Tensor] = None) -> Tuple[Tensor, None]:
        mha = self.mha
        heads = mha.num_heads
        c = mha.embed_dim
        d = c // heads
        # The batch is a constant of a graph (one image), so the reshapes
        # below take numbers, not shape computations: only the length is
        # free (-1). Self-attention only (the decoder's use): key and value
        # are the query.
        batch = int(query.shape[1])
        q, k, v = F.linear(query, mha.in_proj_weight,
                           mha.in_proj_bias).split([c, c, c], dim=-1)

        def split(x: Tensor) -> Tensor:  # [L, B, C] -> [B * heads, L, d]
            return x.reshape(-1, batch * heads, d).transpose(0, 1)

        scores = (split(q) * d**-0.5) @ split(k).transpose(1, 2)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask, float('-inf'))
        out = scores.softmax(-1) @ split(v)  # [B * heads, L, d]
        out = out.transpose(0, 1).reshape(-1, batch, c)
        return mha.out_proj(out), None


def _with_free_length_attention(head: nn.Module) -> nn.Module:
    """A copy of ``head`` whose decoder stages' self-attention takes any
    number of queries when traced (:class:`SelfAttention`); the copy shares
    nothing the original could see changed."""
    head = copy.deepcopy(head)
    for stage in head.mask_heads:
        stage.s_atten = SelfAttention(stage.s_atten)
    return head


class _Decoder(nn.Module):
    """Holds the head and, low rank, the neck's last 1x1 conv."""

    def __init__(self,
                 model: nn.Module,
                 low_rank: bool = False,
                 sum_parts: int = 1):
        super().__init__()
        self.sum_parts = sum_parts
        self.head = model.panoptic_head
        self.low_rank = low_rank
        # The conv's weight and bias only (parameters shared with the
        # model, not copied).
        self.loc_conv = model.neck.loc_conv if low_rank else None

    def feature_map(self, features: Tensor) -> PixelRowsFeatureMap:
        """The encoder's pixel rows as the map the head reads."""
        if not self.low_rank:
            return PixelRowsFeatureMap(features, sum_parts=self.sum_parts)
        conv = self.loc_conv
        return PixelRowsFeatureMap(features, conv.weight[:, :, 0, 0],
                                   conv.bias, self.sum_parts)


class PanopticDecoder(_Decoder):
    """The map -> ``cls_logits`` ``[1, Q, K + 1]``, ``mask_logits``
    ``[1, Q, h, w]``: the object queries through the stages and the object
    adapter, as :meth:`RapSAMHead.predict` for one image."""

    output_names = [CLS_LOGITS, MASK_LOGITS]

    @property
    def input_names(self) -> List[str]:
        return [feature_name(self.low_rank)]

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        cls_logits, mask_logits, _, _ = self.head.predict(
            self.feature_map(features), [DetDataSample()])
        return cls_logits, mask_logits


class PromptDecoder(_Decoder):
    """The map, ``boxes`` ``[N, 4]`` and ``img_shape`` ``(h, w)`` ->
    ``cls_logits`` ``[1, N, K + 1]``, ``mask_logits`` ``[1, N, h', w']``,
    ``iou`` ``[1, N, 1]``: the prompt queries through the stages and the
    prompt adapter, as :meth:`RapSAMHead.predict` for one image's prompts
    (every prompt with the prompt-type label 1, as the predictor gives
    clicks and boxes).

    The head normalises boxes by the image shape from the sample's
    metainfo (Python numbers, constants in a traced graph); here the boxes
    are divided by ``img_shape`` first, the same float division, and the
    sample says the shape is ``(1, 1)`` so the head's division is by one
    (exact).
    """

    output_names = [CLS_LOGITS, MASK_LOGITS, IOU]

    def __init__(self,
                 model: nn.Module,
                 low_rank: bool = False,
                 sum_parts: int = 1):
        super().__init__(model, low_rank, sum_parts)
        # The number of prompts is a free dimension of the graph.
        self.head = _with_free_length_attention(self.head)

    @property
    def input_names(self) -> List[str]:
        return [feature_name(self.low_rank), BOXES, IMG_SHAPE]

    def forward(self, features: Tensor, boxes: Tensor,
                img_shape: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, w = img_shape.to(boxes.dtype).unbind(0)
        scale = torch.stack([w, h, w, h])
        sample = DetDataSample(metainfo=dict(img_shape=(1, 1)))
        sample.gt_instances_collected = InstanceData(
            point_coords=boxes / scale,
            pb_labels=torch.ones_like(boxes[:, 0], dtype=torch.long))
        cls_logits, mask_logits, iou, _ = self.head.predict(
            self.feature_map(features), [sample])
        return cls_logits, mask_logits, iou


#: The most runs of pixels a prompt decoder's weighted sums are split in
#: (:class:`PixelRowsFeatureMap`).
MAX_SUM_PARTS = 8


def sum_parts_for(map_height_multiple: int) -> int:
    """The runs of pixels the prompt decoder's weighted sums are split in
    for maps whose height is a multiple of ``map_height_multiple`` (the
    map's height itself for a fixed-shape export): the most, up to
    :data:`MAX_SUM_PARTS`, that divide it.

    A click pools the map under its mask three times and the prompt adapter
    sums it once under its attention; split, these sums run on every
    thread of the runtime (docs/deploy.md, "Runtime settings the backends
    choose", has the measured effect). The panoptic decoder's sums have
    100 weight rows, a product the runtimes already spread over their
    threads.
    """
    return math.gcd(MAX_SUM_PARTS, max(int(map_height_multiple), 1))


def build_graphs(model: nn.Module,
                 low_rank: bool = False,
                 map_height_multiple: int = 1) -> Dict[str, nn.Module]:
    """The three graphs of a loaded RAP-SAM model, by file stem
    (``image_encoder``, ``panoptic_decoder``, ``prompt_decoder``); they
    share the model's parameters. ``map_height_multiple``: what the
    stride-4 map's height is always a multiple of (see
    :func:`sum_parts_for`).
    """
    return dict(
        image_encoder=ImageEncoder(model, low_rank),
        panoptic_decoder=PanopticDecoder(model, low_rank),
        prompt_decoder=PromptDecoder(model, low_rank,
                                     sum_parts_for(map_height_multiple)))
