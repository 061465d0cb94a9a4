"""Conv + ReLU and conv + residual sum + ReLU as one oneDNN call each, for
mmdet's ResNet once its BatchNorms are folded.

In the folded ResNet every ReLU and every residual sum is a separate pass
over a large feature map (at 800x1344 the first stage's maps are 69 MB):
a fifth of the backbone's time on a 2-core CPU in fp32, and under bf16
autocast, where the convs are fast (AMX) and the separate passes are not,
nearly half. oneDNN applies them to the conv's output while it is still
in cache (its post-ops, the kernels inductor uses for ``torch.compile``).
In fp32 the results are the same numbers: the sum and the ReLU are
applied to the same conv output. In bf16 the sum is taken before the
conv's output is rounded to bf16 (autocast's plain forward rounds it, then
adds and rounds again): one rounding fewer.

:func:`fuse_conv_relu` switches the blocks it can (``Bottleneck`` and
``BasicBlock`` with folded norms and no plugins, and the ResNet stem) to
subclasses whose forward fuses when it runs on a CPU without autograd, in
fp32 without autocast or under bf16 autocast with the convs' weights
stored in bf16 (:func:`rap_sam.models.utils.cast_autocast_weights`, as
``prepare(model, 'fast', precision='bf16')`` stores them), and runs
mmdet's forward otherwise (also when a forward hook is registered on one
of the block's convs). Parameters and state-dict keys are unchanged.

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

#: The dtypes the fused convs run in, and how far a tiny fused conv may be
#: from the plain one in each (relative to its largest output).
FUSED_DTYPES = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


@functools.lru_cache(maxsize=None)
def onednn_fusion_works(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's fused convs (private to torch: inductor's kernels)
    exist in this torch and give the unfused results in ``dtype`` on this
    CPU, tried once per dtype on a tiny conv: a build or CPU where they are
    missing or raise (bf16 on a CPU oneDNN has no bf16 kernels for) runs
    mmdet's forward instead of failing."""
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
        conv.to(dtype)
        try:
            got = (conv2d_relu(conv, x.to(dtype)),
                   conv2d_relu(conv, x.to(dtype), other.to(dtype)),
                   conv2d_add_(other.to(dtype, copy=True), conv, x.to(dtype)))
        except RuntimeError:
            return False
    tolerance = FUSED_DTYPES[dtype] * want.abs().max()
    return all(a.dtype == dtype and (a.float() - b).abs().max() <= tolerance
               for a, b in zip(got, (want.relu(),
                                     (want + other).relu(), want + other)))


def fusion_dtype(x: Tensor, *convs: nn.Conv2d):
    """The dtype the fused convs run ``convs`` on ``x`` in, or None where
    mmdet's forward runs: fp32 without autocast, bf16 under CPU bf16
    autocast with the convs' weights stored in bf16 (what autocast would
    compute them in; oneDNN's fused op, which autocast does not know,
    takes its operands as they come). Never with autograd or under ONNX
    tracing (no form for it)."""
    if x.device.type != 'cpu' or x.dim() != 4 or torch.is_grad_enabled() \
            or torch.jit.is_tracing():
        return None
    if torch.is_autocast_enabled('cpu'):
        dtype = torch.get_autocast_dtype('cpu')
    elif x.dtype == torch.float32:
        dtype = torch.float32
    else:
        return None
    if dtype not in FUSED_DTYPES or any(
            conv.weight.dtype != dtype
            or conv.bias is not None and conv.bias.dtype != dtype
            for conv in convs):
        return None
    return dtype if onednn_fusion_works(dtype) else None


def _hooked(*modules: nn.Module) -> bool:
    """Whether a forward hook waits on one of ``modules``: the fused call
    does not run their forward, so mmdet's forward runs instead."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def conv2d_relu(conv: nn.Conv2d, x: Tensor, residual: Tensor = None) -> Tensor:
    """``relu(conv(x))``, or ``relu(conv(x) + residual)``, in one oneDNN
    call (``x``, ``residual`` and the conv's weights in the dtype
    :func:`fusion_dtype` names)."""
    args = (conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation,
            conv.groups)
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, *args, 'relu', [],
                                                       None)
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, *args, 'add', None, 'relu', [], None)


def conv2d_add_(other: Tensor, conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``other += conv(x)`` in one oneDNN call (``conv(x)`` is never
    written out); returns ``other``. Both channels-last, in the dtype
    :func:`fusion_dtype` names for ``x`` and ``conv``."""
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
        downsample = [] if self.downsample is None else list(
            self.downsample.modules())
        convs = [self.conv1, self.conv2, self.conv3]
        if shortcut is not None:
            convs.append(shortcut)
        dtype = fusion_dtype(x, *convs)
        if self.training or dtype is None or _hooked(*convs, *downsample):
            return super().forward(x)
        x = x.to(dtype)
        out = conv2d_relu(self.conv1, x)
        out = conv2d_relu(self.conv2, out)
        if shortcut is not None:
            return self._conv3_with_shortcut(out, x, shortcut)
        identity = x if self.downsample is None else self.downsample(x)
        return conv2d_relu(self.conv3, out, identity.to(dtype))

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
        dtype = fusion_dtype(x, self.conv1, self.conv2)
        if self.training or dtype is None or _hooked(self.conv1, self.conv2):
            return super().forward(x)
        x = x.to(dtype)
        out = conv2d_relu(self.conv1, x)
        identity = x if self.downsample is None else self.downsample(x)
        return conv2d_relu(self.conv2, out, identity.to(dtype))


class FusedStemResNet(ResNet):
    """mmdet's ``ResNet`` (folded, plain stem) with the stem's conv + ReLU
    fused."""

    def forward(self, x: Tensor):
        dtype = fusion_dtype(x, self.conv1)
        if self.training or dtype is None or _hooked(self.conv1):
            return super().forward(x)
        # Under autocast the image comes in fp32: cast as autocast would.
        x = self.maxpool(conv2d_relu(self.conv1, x.to(dtype)))
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
