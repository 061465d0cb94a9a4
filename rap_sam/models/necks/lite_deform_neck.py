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

    With ``low_rank_output`` (set by
    :func:`rap_sam.models.utils.optimize_for_inference`; eval mode only) the
    output is a :class:`LowRankFeatureMap`: the aggregated map and the 1x1
    conv, which the head applies inside its products (the same numbers to
    float rounding, half the bytes per pass).

    Args:
        in_channels (Sequence[int]): Backbone channels at strides 4..32.
        agg_channels (int): Channels of the FPN's aggregated map.
        out_channels (int): Channels of the output map.
        norm_cfg (dict): Norm layers of the deformable steps.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 agg_channels: int = 128,
                 out_channels: int = 256,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.deconv = LiteDeformFPN(in_channels, agg_channels, norm_cfg)
        self.loc_conv = nn.Conv2d(agg_channels + 2, out_channels, 1)
        self.low_rank_output = False

    def forward(self, feats: Sequence[Tensor]):
        x = self.deconv(feats)
        if self.low_rank_output and not self.training:
            return LowRankFeatureMap(x, self.loc_conv.weight[:, :, 0, 0],
                                     self.loc_conv.bias)
        return self.loc_conv(with_coordinates(x))
