from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor

from .kernel_updator import KernelUpdator
from .low_rank_feature_map import FeatureMap, masked_sum, project


def _linear_ln_relu(channels: int) -> nn.ModuleList:
    return nn.ModuleList([
        nn.Linear(channels, channels, bias=False),
        nn.LayerNorm(channels),
        nn.ReLU(inplace=True)
    ])


def _mlp(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, out_channels))


def update_with_pooled(update: nn.Module, features: FeatureMap,
                       queries: Tensor, masks: Tensor) -> Tensor:
    """``update(pooled, queries)``, ``pooled`` the features summed under each
    bool mask ``[B, N, H, W]`` (sigmoid(x) > 0.5 is x > 0; a sum, not a
    mean)."""
    device = queries.device.type
    if not (torch.is_autocast_enabled(device)
            and torch.get_autocast_dtype(device) == torch.float16):
        return update(masked_sum(features, masks), queries)
    # A sum over thousands of pixels, and the products of it, pass fp16's
    # largest value (65504): under fp16 autocast both run in fp32.
    with torch.autocast(device, enabled=False):
        return update(masked_sum(features.float(), masks), queries.float())


def _value_attention(attn: nn.Module, queries: Tensor) -> Tensor:
    """``attn(q, q, q)`` when each query may attend to itself only: the
    softmax over one key is 1, so the output is the query's value,
    projected (no query / key projections, no scores)."""
    # chunk, not a slice at the queries' width: a traced graph keeps the
    # weight's value rows a constant (a slice by a traced size is a Slice
    # and a Transpose of the weight per run).
    value = F.linear(queries,
                     attn.in_proj_weight.chunk(3)[2],
                     attn.in_proj_bias.chunk(3)[2])
    return attn.out_proj(value)


class DecoderStage(nn.Module):
    """One stage of the shared multitask decoder.

    Queries pool the features under their current (binarised) masks, are
    updated by a gated kernel updater, attend to each other, and predict a
    class embedding, a new mask and an IoU. Attribute names follow the
    reference so the released checkpoint loads
    (``panoptic_head.mask_heads.{i}.*``).

    Args:
        channels (int): Query and feature channels.
        cls_embed_dims (int): Dimension of the class (CLIP text) embedding.
        num_heads (int): Heads of the query self-attention.
        ffn_channels (int): Hidden channels of the FFN.
    """

    def __init__(self,
                 channels: int = 256,
                 cls_embed_dims: int = 768,
                 num_heads: int = 8,
                 ffn_channels: int = 2048):
        super().__init__()
        self.kernel_update = KernelUpdator(channels, channels, channels)
        self.s_atten = nn.MultiheadAttention(channels, num_heads)
        self.s_atten_norm = nn.LayerNorm(channels)
        self.ffn = FFN(
            embed_dims=channels, feedforward_channels=ffn_channels, num_fcs=2)
        self.ffn_norm = nn.LayerNorm(channels)
        self.cls_fcs = _linear_ln_relu(channels)
        self.cls_proj = _mlp(channels, channels, cls_embed_dims)
        self.mask_fcs = _linear_ln_relu(channels)
        self.fc_mask = nn.Linear(channels, channels)
        self.iou_embed = _mlp(channels, channels, 1)

    def forward(
        self,
        features: FeatureMap,
        queries: Tensor,
        mask_logits: Tensor,
        self_attn_mask: Optional[Tensor] = None,
        with_masks: bool = True,
        with_cls: bool = True,
        with_iou: bool = True,
        isolated: bool = False
    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Tensor]:
        """
        Args:
            features (Tensor | LowRankFeatureMap): [B, C, H, W] (a clip's
                frames stacked in H).
            queries (Tensor): [B, N, C].
            mask_logits (Tensor): [B, N, H, W] from the previous stage.
            self_attn_mask (Tensor, optional): [N, N] bool, True = blocked.
            with_masks (bool): Whether to compute the new mask logits (a
                pass over the whole map; None is returned without).
            with_cls, with_iou (bool): Whether to compute the class
                embeddings and the IoU predictions (None without): inference
                reads them from one stage only.
            isolated (bool): Each query attends to itself only (prompts of
                one mask token each), whatever ``self_attn_mask`` says: the
                self-attention is then the projected value of each query.

        Returns:
            tuple: class embeddings [B, N, D], mask logits [B, N, H, W],
            IoU predictions [B, N, 1], updated queries [B, N, C].
        """
        queries = update_with_pooled(self.kernel_update, features, queries,
                                     mask_logits > 0)

        # Attention dropout (none in the released model) would act on the
        # one weight of 1.
        if isolated and not (self.training
                             and getattr(self.s_atten, 'dropout', 0)):
            q = queries + _value_attention(self.s_atten, queries)
        else:
            q = queries.transpose(0, 1)
            q = q + self.s_atten(q, q, q, attn_mask=self_attn_mask)[0]
            q = q.transpose(0, 1)
        queries = self.ffn_norm(self.ffn(self.s_atten_norm(q)))

        cls_embed = None
        if with_cls:
            cls_embed = queries
            for layer in self.cls_fcs:
                cls_embed = layer(cls_embed)
            cls_embed = self.cls_proj(cls_embed)
        mask_logits = ious = None
        if with_masks or with_iou:
            mask_feat = queries
            for layer in self.mask_fcs:
                mask_feat = layer(mask_feat)
            if with_masks:
                mask_logits = project(features, self.fc_mask(mask_feat))
            if with_iou:
                ious = self.iou_embed(mask_feat)
        return cls_embed, mask_logits, ious, queries
