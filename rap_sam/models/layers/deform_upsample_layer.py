import math

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.ops import ModulatedDeformConv2d
from torch import Tensor

from rap_sam.ops import check_deform_conv_impl, modulated_deform_conv2d
from rap_sam.ops.modulated_deform_conv import gemm_weight_layout
from ..utils.fold_batch_norm import fold_conv_bn


class DeformUpsampleLayer(nn.Module):
    """Modulated deformable 3x3 conv, norm, ReLU, then a 2x transposed conv,
    norm, ReLU: one top-down step of the lite deformable neck.

    The offsets and modulation come from a plain 3x3 conv (18 offsets, 9
    mask logits) that starts at zero, so training begins from a regular
    convolution; the transposed conv starts as bilinear upsampling.

    The deformable conv keeps mmcv's module (and its checkpoint keys) but
    runs through :func:`rap_sam.ops.modulated_deform_conv2d` with this
    layer's ``dcn_impl``: by default (``'auto'``) mmcv's kernel on GPUs, one
    gather and one GEMM on CPUs (mmcv's CPU kernel is scalar and
    single-threaded), equal to float rounding.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Norm layers (``SyncBN`` is applied by mmengine's
            ``sync_bn`` option only when a process group exists).
        dcn_impl (str): The deformable conv's implementation, one of
            :data:`rap_sam.ops.DCN_IMPLS`: ``'auto'``, ``'torch'`` (gather +
            GEMM), ``'mmcv'`` (the reference kernel) or ``'onnx'``
            (standard ONNX operators, for export). It can be changed later
            by assigning the attribute.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: dict = dict(type='BN'),
                 dcn_impl: str = 'auto'):
        super().__init__()
        self.dcn_offset = nn.Conv2d(in_channels, 27, 3, padding=1)
        self.dcn = ModulatedDeformConv2d(
            in_channels, out_channels, 3, padding=1, bias=False)
        self.dcn_bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.up_sample = nn.ConvTranspose2d(
            out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.up_bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU()
        self.dcn_impl = dcn_impl
        self.init_weights()

    @property
    def dcn_impl(self) -> str:
        return self._dcn_impl

    @dcn_impl.setter
    def dcn_impl(self, impl: str) -> None:
        self._dcn_impl = check_deform_conv_impl(impl)

    def init_weights(self) -> None:
        nn.init.kaiming_normal_(
            self.dcn.weight, mode='fan_out', nonlinearity='relu')
        nn.init.zeros_(self.dcn_offset.weight)
        nn.init.zeros_(self.dcn_offset.bias)
        self.up_sample.weight.data.copy_(
            bilinear_kernel(self.up_sample.weight.shape))

    def forward(self, x: Tensor) -> Tensor:
        # 27 channels: 18 offsets ((dy, dx) per tap), then 9 modulation
        # logits.
        offset_mask = self.dcn_offset(x)
        offset = offset_mask[:, :18]
        mask = offset_mask[:, 18:].sigmoid()
        dcn = self.dcn
        x = modulated_deform_conv2d(x, offset, mask, dcn.weight, dcn.bias,
                                    dcn.stride, dcn.padding, dcn.dilation,
                                    dcn.groups, dcn.deform_groups,
                                    self.dcn_impl)
        if torch.is_grad_enabled():
            x = self.relu(self.dcn_bn(x))
            return self.relu(self.up_bn(self.up_sample(x)))
        # Without autograd the ReLUs overwrite their inputs (fresh outputs):
        # no new buffer, so no page faults on one as large as the output.
        x = self.dcn_bn(x).relu_()
        return self.up_bn(self.up_sample(x)).relu_()

    def switch_to_deploy(self) -> None:
        """Fold both BatchNorms into the convs before them (their running
        statistics, so in eval mode only); they become ``nn.Identity``.
        The outputs equal the unfolded layer's to float rounding. Load
        checkpoints before: the folded layer has no BN keys. Calling it
        again does nothing."""
        if self.training:
            raise RuntimeError('DeformUpsampleLayer.switch_to_deploy folds '
                               'running statistics: call eval() first')
        for conv_name, bn_name in (('dcn', 'dcn_bn'), ('up_sample', 'up_bn')):
            bn = getattr(self, bn_name)
            if isinstance(bn, nn.Identity):
                continue
            fold_conv_bn(getattr(self, conv_name), bn)
            setattr(self, bn_name, nn.Identity())

    def gemm_weight_layout(self) -> None:
        """Store the deformable conv's weight as ``[C, kh, kw, Cout]`` (the
        same values and shape), the matrix the gather + GEMM implementation
        multiplies by, so that it is not transposed at every call
        (:func:`rap_sam.ops.modulated_deform_conv.gemm_weight_layout`).
        Only speed depends on it: a later ``.to(memory_format=...)`` that
        relays the weight out gives the same results."""
        weight = self.dcn.weight
        weight.data = gemm_weight_layout(weight.data)


def bilinear_kernel(shape) -> Tensor:
    """Transposed-conv weights ``[C, C, k, k]`` that upsample each channel
    bilinearly on its own (channel i reads only channel i)."""
    channels, _, size, _ = shape
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    profile = 1 - (torch.arange(size, dtype=torch.float32) / f - c).abs()
    weight = torch.zeros(shape)
    index = torch.arange(channels)
    weight[index, index] = profile[:, None] * profile[None, :]
    return weight
