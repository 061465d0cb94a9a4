"""BatchNorm folding: an eval-mode BN after a conv is an affine map per
output channel, so it can be merged into the conv's weight and bias.

RAP-SAM's own modules fold their BNs in their ``switch_to_deploy`` method
(with :func:`fold_conv_bn`); :func:`fold_batch_norms` folds the parts the
project takes from mmdet and mmcv (``ResNet`` and its blocks,
``ConvModule``), recognised by their classes.
"""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.ops import ModulatedDeformConv2d
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch.nn.modules.batchnorm import _BatchNorm

#: Convs whose weight is ``[Cout, Cin / groups, *kernel]`` and that add
#: their ``bias`` attribute (mmcv's ``ModulatedDeformConv2d`` passes it to
#: its op, so a folded bias is used).
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, ModulatedDeformConv2d)


def foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (after ``conv``) can be folded into ``conv``."""
    return isinstance(conv, _CONVS + (nn.ConvTranspose2d, )) and isinstance(
        bn, _BatchNorm) and bn.track_running_stats and \
        bn.running_mean is not None


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: _BatchNorm) -> None:
    """``conv`` becomes ``bn(conv(.))`` (in place; computed in float64).
    The caller replaces ``bn`` by ``nn.Identity``."""
    if not foldable(conv, bn):
        raise TypeError(f'cannot fold a {type(bn).__name__} into a '
                        f'{type(conv).__name__}')
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight
    if isinstance(conv, nn.ConvTranspose2d):
        # [Cin, Cout / groups, k, k]: output channel (group, j).
        groups = conv.groups
        cin, cout_g = weight.shape[:2]
        w = weight.double().view(groups, cin // groups, cout_g, -1)
        new_weight = (w * scale.view(groups, 1, cout_g, 1)).view_as(weight)
    else:
        new_weight = weight.double() * scale.view(-1,
                                                  *([1] * (weight.dim() - 1)))
    bias = conv.bias
    new_bias = shift if bias is None else bias.double() * scale + shift
    weight.copy_(new_weight.to(weight.dtype))
    if bias is None:
        conv.bias = nn.Parameter(
            new_bias.to(weight.dtype), requires_grad=weight.requires_grad)
    else:
        bias.copy_(new_bias.to(bias.dtype))


def _fold_sequential(seq: nn.Sequential) -> int:
    """Consecutive (conv, BN) children, e.g. ResNet's downsample branch
    and deep stem."""
    count = 0
    children = list(seq._modules.items())
    for (_, conv), (key, bn) in zip(children, children[1:]):
        if foldable(conv, bn):
            fold_conv_bn(conv, bn)
            seq._modules[key] = nn.Identity()
            count += 1
    return count


def _fold_named(module: nn.Module, indices) -> int:
    """mmdet's ``conv{i}`` followed by the norm named ``norm{i}_name``."""
    count = 0
    for i in indices:
        conv = getattr(module, f'conv{i}')
        name = getattr(module, f'norm{i}_name')
        bn = getattr(module, name)
        if foldable(conv, bn):
            fold_conv_bn(conv, bn)
            setattr(module, name, nn.Identity())
            count += 1
    return count


def fold_batch_norms(model: nn.Module) -> int:
    """Fold the BNs of mmdet's ``ResNet`` (stem, ``BasicBlock``,
    ``Bottleneck``, downsample branches) and of mmcv's ``ConvModule`` (norm
    after conv) found in ``model``, in place; returns how many. Other
    modules are left alone. The model must be in eval mode; the folded
    model has no BN keys, so load checkpoints first. The outputs equal the
    unfolded model's to float rounding."""
    if model.training:
        raise RuntimeError('fold_batch_norms folds running statistics: '
                           'call eval() first')
    count = 0
    for module in list(model.modules()):
        if isinstance(module, ResNet):
            if module.deep_stem:
                count += _fold_sequential(module.stem)
            else:
                count += _fold_named(module, (1, ))
        elif isinstance(module, BasicBlock):
            count += _fold_named(module, (1, 2))
        elif isinstance(module, Bottleneck):
            count += _fold_named(module, (1, 2, 3))
        elif isinstance(module, ConvModule) and module.with_norm and \
                module.order.index('conv') < module.order.index('norm'):
            if foldable(module.conv, module.norm):
                fold_conv_bn(module.conv, module.norm)
                setattr(module, module.norm_name, nn.Identity())
                count += 1
        if isinstance(module, (BasicBlock, Bottleneck)) and isinstance(
                module.downsample, nn.Sequential):
            count += _fold_sequential(module.downsample)
    return count
