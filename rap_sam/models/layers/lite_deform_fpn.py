from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..utils.fuse_conv_relu import conv2d_add_, fusion_dtype
from .deform_upsample_layer import DeformUpsampleLayer


class LiteDeformFPN(nn.Module):
    """YOSO's lite deformable FPN: a top-down path of deformable upsampling
    steps, then the four levels projected to ``agg_channels``, brought to
    stride 4 and summed (cross-level feature aggregation).

    Attribute names follow the reference (``neck.deconv.*`` in the released
    checkpoint).

    Args:
        in_channels (Sequence[int]): Backbone channels at strides 4..32.
        agg_channels (int): Channels of the aggregated output.
        norm_cfg (dict): Norm layers of the deformable steps.
        dcn_impl (str): The deformable convs' implementation (see
            :class:`DeformUpsampleLayer`).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 agg_channels: int = 128,
                 norm_cfg: dict = dict(type='BN'),
                 dcn_impl: str = 'auto'):
        super().__init__()
        c2, c3, c4, c5 = in_channels
        l2, l3, l4, l5 = (c // 2 for c in in_channels)
        self.lateral_conv0 = nn.Conv2d(c5, l5, 1)
        self.deform_conv1 = DeformUpsampleLayer(l5, l4, norm_cfg, dcn_impl)
        self.lateral_conv1 = nn.Conv2d(c4, l4, 1)
        self.deform_conv2 = DeformUpsampleLayer(l4, l3, norm_cfg, dcn_impl)
        self.lateral_conv2 = nn.Conv2d(c3, l3, 1)
        self.deform_conv3 = DeformUpsampleLayer(l3, l2, norm_cfg, dcn_impl)
        self.lateral_conv3 = nn.Conv2d(c2, l2, 1)
        self.output_conv = nn.Conv2d(agg_channels, agg_channels, 3, padding=1)
        self.bias = nn.Parameter(torch.zeros(1, agg_channels, 1, 1))
        self.conv_a5 = nn.Conv2d(l5, agg_channels, 1, bias=False)
        self.conv_a4 = nn.Conv2d(l4, agg_channels, 1, bias=False)
        self.conv_a3 = nn.Conv2d(l3, agg_channels, 1, bias=False)
        self.conv_a2 = nn.Conv2d(l2, agg_channels, 1, bias=False)

    def deform_layers(self) -> Tuple[DeformUpsampleLayer, ...]:
        return self.deform_conv1, self.deform_conv2, self.deform_conv3

    @property
    def dcn_impl(self) -> str:
        """The deformable convs' implementation; assigning it sets all
        three."""
        return self.deform_conv1.dcn_impl

    @dcn_impl.setter
    def dcn_impl(self, impl: str) -> None:
        for layer in self.deform_layers():
            layer.dcn_impl = impl

    def switch_to_deploy(self) -> None:
        """Fold the deformable steps' BatchNorms (eval mode only)."""
        for layer in self.deform_layers():
            layer.switch_to_deploy()

    def gemm_weight_layout(self) -> None:
        """Lay the deformable convs' weights out for the gather + GEMM
        implementation (:meth:`DeformUpsampleLayer.gemm_weight_layout`)."""
        for layer in self.deform_layers():
            layer.gemm_weight_layout()

    @staticmethod
    def _add_conv(x: Tensor, conv: nn.Conv2d, feat: Tensor,
                  fuse: bool) -> Tensor:
        """``conv(feat) + x`` (in ``conv(feat)``'s memory format, which
        the later ops' summation order follows). Without autograd into a
        fresh tensor: into ``x`` as a oneDNN post-op when ``fuse`` and
        ``x`` is channels-last (``conv(feat)`` never written out), else
        into ``conv(feat)``."""
        if torch.is_grad_enabled():
            return conv(feat) + x
        if fuse and x.dtype == feat.dtype and x.is_contiguous(
                memory_format=torch.channels_last):
            return conv2d_add_(x, conv, feat)
        return conv(feat).add_(x)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Backbone features at strides 4, 8, 16, 32 -> [B, agg, H/4, W/4]."""
        x5 = self.lateral_conv0(feats[3])
        # The oneDNN post-op sums apply to channels-last CPU features
        # (a + b == b + a: the same sums as the plain ones), in fp32, or
        # in bf16 under autocast where the convs' weights are bf16.
        convs = (self.lateral_conv1, self.lateral_conv2, self.lateral_conv3,
                 self.conv_a2)
        fuse = all(
            fusion_dtype(f, *convs) == f.dtype and f.is_contiguous(
                memory_format=torch.channels_last) for f in feats)
        x4 = self._add_conv(
            self.deform_conv1(x5), self.lateral_conv1, feats[2], fuse)
        x3 = self._add_conv(
            self.deform_conv2(x4), self.lateral_conv2, feats[1], fuse)
        x2 = self._add_conv(
            self.deform_conv3(x3), self.lateral_conv3, feats[0], fuse)

        def up(x: Tensor, scale: int) -> Tensor:
            return F.interpolate(
                x, scale_factor=scale, mode='bilinear', align_corners=False)

        # The sum left to right, as one expression would add it, but into
        # one stride-4 buffer instead of a new one per term.
        out = up(self.conv_a5(x5), 8)
        out.add_(up(self.conv_a4(x4), 4)).add_(up(self.conv_a3(x3), 2))
        if fuse and out.dtype == x2.dtype and out.is_contiguous(
                memory_format=torch.channels_last):
            conv2d_add_(out, self.conv_a2, x2)
        else:
            out.add_(self.conv_a2(x2))
        # In the map's dtype: a bf16 map plus an fp32 bias in place is a
        # slow mixed-dtype pass (52 ms against about 5 at 800x1344).
        out.add_(self.bias.to(out.dtype))
        return self.output_conv(out)
