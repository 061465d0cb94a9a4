"""Conv + ReLU and conv + residual sum + ReLU as one oneDNN call each, for
mmdet's ResNet once its BatchNorms are folded.

In the folded ResNet every ReLU and every residual sum is a separate pass
over a large feature map (at 800x1344 the first stage's maps are 69 MB):
a fifth of the backbone's time on a 2-core CPU. oneDNN applies them to
the conv's output while it is still in cache (its post-ops, the kernels
inductor uses for ``torch.compile``). The results are the same numbers:
the sum and the ReLU are applied to the same float32 conv output.

:func:`fuse_conv_relu` switches the blocks it can (``Bottleneck`` and
``BasicBlock`` with folded norms and no plugins, and the ResNet stem) to
subclasses whose forward fuses when it runs on a CPU in float32 without
autograd or autocast, and runs mmdet's forward otherwise (also when a
forward hook is registered on one of the block's convs). Parameters and
state-dict keys are unchanged.

A stage's first ``Bottleneck`` adds a 1x1 downsample of its input to its
last 1x1 conv: ``conv3(out) + downsample(x)`` is one 1x1 conv of
``[out, x]`` (concatenated channels, ``x`` subsampled by the downsample's
stride) with the two weights side by side, so the shortcut is never
written out and read back (the same products; the sums in another order).
"""
import functools

import torch
import torch.nn as nn
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor


@functools.lru_cache(maxsize=None)
def onednn_fusion_works() -> bool:
    """Whether oneDNN's fused convs (private to torch: inductor's kernels)
    exist in this torch and give the unfused results on this CPU, tried
    once on a tiny conv: a build or CPU where they are missing or raise
    runs mmdet's forward instead of failing."""
    if not (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_convolution_pointwise_')):
        return False
    generator = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    with torch.no_grad():
        for param in conv.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
        x, other = (
            torch.randn(1, 8, 5, 7, generator=generator).contiguous(
                memory_format=torch.channels_last) for _ in range(2))
        want = conv(x)
        try:
            got = (conv2d_relu(conv, x), conv2d_relu(conv, x, other),
                   conv2d_add_(other.clone(), conv, x))
        except RuntimeError:
            return False
    return all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-4)
        for a, b in zip(got, (want.relu(),
                              (want + other).relu(), want + other)))


def fusable_input(x: Tensor) -> bool:
    """Whether oneDNN's fused conv applies to ``x`` (and autograd and
    autocast, which it does not know, are off; so is ONNX tracing, which
    has no form for it)."""
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and x.dim() == 4 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled('cpu')
            and not torch.jit.is_tracing() and onednn_fusion_works())


def _hooked(*modules: nn.Module) -> bool:
    """Whether a forward hook waits on one of ``modules``: the fused call
    does not run their forward, so mmdet's forward runs instead."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def conv2d_relu(conv: nn.Conv2d, x: Tensor, residual: Tensor = None) -> Tensor:
    """``relu(conv(x))``, or ``relu(conv(x) + residual)``, in one oneDNN
    call (:func:`fusable_input` must hold)."""
    args = (conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation,
            conv.groups)
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, *args, 'relu', [],
                                                       None)
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, *args, 'add', None, 'relu', [], None)


def conv2d_add_(other: Tensor, conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``other += conv(x)`` in one oneDNN call (``conv(x)`` is never
    written out); returns ``other``. Both channels-last, and
    :func:`fusable_input` must hold for ``x``."""
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        other, x, conv.weight, conv.bias, conv.padding, conv.stride,
        conv.dilation, conv.groups, 'add', None, None, [], None)


def _plain_conv(conv: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and conv.padding_mode == 'zeros' and \
        not isinstance(conv.padding, str)


def _folded(module: nn.Module, names) -> bool:
    return all(isinstance(getattr(module, n), nn.Identity) for n in names)


def _plain_1x1(conv: nn.Module) -> bool:
    return _plain_conv(conv) and conv.kernel_size == (1, 1) and \
        conv.padding == (0, 0) and conv.dilation == (1, 1) and \
        conv.groups == 1 and conv.bias is not None


def _merged_shortcut(block: Bottleneck):
    """The plain 1x1 conv of ``block``'s downsample (mmdet's ``conv, norm``
    with the norm folded), or None when it has none that
    :class:`FusedBottleneck` can merge into ``conv3``."""
    downsample = block.downsample
    if not (isinstance(downsample, nn.Sequential) and len(downsample) == 2
            and isinstance(downsample[1], nn.Identity)):
        return None
    conv = downsample[0]
    return conv if _plain_1x1(conv) and _plain_1x1(block.conv3) else None


class FusedBottleneck(Bottleneck):
    """mmdet's ``Bottleneck`` (folded) with fused conv + ReLU steps; a 1x1
    downsample shortcut is merged into ``conv3``."""

    def forward(self, x: Tensor) -> Tensor:
        shortcut = _merged_shortcut(self)
        if self.training or not fusable_input(x) or _hooked(
                self.conv1, self.conv2, self.conv3,
                *([]
                  if self.downsample is None else self.downsample.modules())):
            return super().forward(x)
        out = conv2d_relu(self.conv1, x)
        out = conv2d_relu(self.conv2, out)
        if shortcut is not None:
            return self._conv3_with_shortcut(out, x, shortcut)
        identity = x if self.downsample is None else self.downsample(x)
        return conv2d_relu(self.conv3, out, identity)

    def _conv3_with_shortcut(self, out: Tensor, x: Tensor,
                             shortcut: nn.Conv2d) -> Tensor:
        """``relu(conv3(out) + shortcut(x))`` as one 1x1 conv of the
        concatenated channels."""
        weight, bias = self._merged_weights(shortcut)
        sh, sw = shortcut.stride
        inputs = torch.cat([out, x[:, :, ::sh, ::sw]], dim=1)
        return torch.ops.mkldnn._convolution_pointwise(inputs, weight, bias,
                                                       [0, 0], [1, 1], [1, 1],
                                                       1, 'relu', [], None)

    def _merged_weights(self, shortcut: nn.Conv2d):
        """``[conv3.weight, shortcut.weight]`` side by side and the summed
        biases, made once and remade when a weight changes (a new tensor or
        an in-place update, e.g. ``load_state_dict``). A plain attribute,
        not a buffer: no state-dict keys."""
        tensors = (self.conv3.weight, self.conv3.bias, shortcut.weight,
                   shortcut.bias)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = self.__dict__.get('_merged_conv3')
        if cached is None or cached[0] != key:
            weight = torch.cat([self.conv3.weight, shortcut.weight], dim=1)
            cached = (key, weight.detach(),
                      (self.conv3.bias + shortcut.bias).detach())
            self.__dict__['_merged_conv3'] = cached
        return cached[1], cached[2]


class FusedBasicBlock(BasicBlock):
    """mmdet's ``BasicBlock`` (folded) with fused conv + ReLU steps."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training or not fusable_input(x) or _hooked(
                self.conv1, self.conv2):
            return super().forward(x)
        out = conv2d_relu(self.conv1, x)
        identity = x if self.downsample is None else self.downsample(x)
        return conv2d_relu(self.conv2, out, identity)


class FusedStemResNet(ResNet):
    """mmdet's ``ResNet`` (folded, plain stem) with the stem's conv + ReLU
    fused."""

    def forward(self, x: Tensor):
        if self.training or not fusable_input(x) or _hooked(self.conv1):
            return super().forward(x)
        x = self.maxpool(conv2d_relu(self.conv1, x))
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def fuse_conv_relu(model: nn.Module) -> int:
    """Switch the folded ``Bottleneck``, ``BasicBlock`` and plain ResNet
    stems in ``model`` to their fused forms, in place; returns how many.
    Blocks with BatchNorms left, plugins or other conv types (DCN) stay
    as they are. Fold first (:func:`fold_batch_norms`)."""
    count = 0
    for module in model.modules():
        if type(module) is Bottleneck and not module.with_plugins and \
                _folded(module, (module.norm1_name, module.norm2_name,
                                 module.norm3_name)) and \
                all(_plain_conv(module.get_submodule(f'conv{i}'))
                    for i in (1, 2, 3)):
            module.__class__ = FusedBottleneck
        elif type(module) is BasicBlock and \
                _folded(module, (module.norm1_name, module.norm2_name)) and \
                all(_plain_conv(module.get_submodule(f'conv{i}'))
                    for i in (1, 2)):
            module.__class__ = FusedBasicBlock
        elif type(module) is ResNet and not module.deep_stem and \
                _folded(module, (module.norm1_name, )) and \
                _plain_conv(module.conv1):
            module.__class__ = FusedStemResNet
        else:
            continue
        count += 1
    return count
