from typing import Sequence

import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from ..layers import LiteDeformFPN, LowRankFeatureMap, with_coordinates


@MODELS.register_module()
class LiteDeformNeck(BaseModule):
    """The RAP-SAM neck: one stride-4 feature map for every task.

    The lite deformable FPN aggregates the backbone levels; two coordinate
    channels (x then y, -1..1) are appended so the dot-product mask kernels
    can be position-aware, and a 1x1 conv gives ``out_channels``.

    After :meth:`switch_to_deploy` (``rap_sam.deploy.prepare``'s ``'fast'``
    mode) the eval-mode output is a :class:`LowRankFeatureMap`: the
    aggregated map and the 1x1 conv, which the head applies inside its
    products (the same numbers to float rounding, half the bytes per pass).

    Args:
        in_channels (Sequence[int]): Backbone channels at strides 4..32.
        agg_channels (int): Channels of the FPN's aggregated map.
        out_channels (int): Channels of the output map.
        norm_cfg (dict): Norm layers of the deformable steps.
        dcn_impl (str): The deformable convs' implementation: ``'auto'``
            (mmcv's kernel on GPUs, gather + GEMM elsewhere), ``'torch'``,
            ``'mmcv'`` or ``'onnx'`` (see
            :func:`rap_sam.ops.modulated_deform_conv2d`); it can be changed
            later through the ``dcn_impl`` attribute.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 agg_channels: int = 128,
                 out_channels: int = 256,
                 norm_cfg: dict = dict(type='BN'),
                 dcn_impl: str = 'auto',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.deconv = LiteDeformFPN(in_channels, agg_channels, norm_cfg,
                                    dcn_impl)
        self.loc_conv = nn.Conv2d(agg_channels + 2, out_channels, 1)
        self.low_rank_output = False

    @property
    def dcn_impl(self) -> str:
        return self.deconv.dcn_impl

    @dcn_impl.setter
    def dcn_impl(self, impl: str) -> None:
        self.deconv.dcn_impl = impl

    def switch_to_deploy(self, low_rank_output: bool = True) -> None:
        """Fold the BatchNorms (eval mode only) and, with
        ``low_rank_output``, hand the head a :class:`LowRankFeatureMap`
        in eval mode."""
        self.deconv.switch_to_deploy()
        self.low_rank_output = low_rank_output

    def forward(self, feats: Sequence[Tensor]):
        x = self.deconv(feats)
        if self.low_rank_output and not self.training:
            return LowRankFeatureMap(x, self.loc_conv.weight[:, :, 0, 0],
                                     self.loc_conv.bias)
        return self.loc_conv(with_coordinates(x))
