"""Opt-in inference optimisations for RAP-SAM (and any mmdet model built
from the same parts).

Nothing here runs unless called; the model as built is the reference.

- :func:`fold_batch_norms` folds eval-mode BatchNorms into the convolution
  before them (mmdet ResNet stems and blocks, ``nn.Sequential`` conv + BN
  pairs, mmcv ``ConvModule``, RAP-SAM's deformable upsampling steps). The
  outputs equal the unfolded model's to float rounding (a few 1e-7
  relative); the folded model has no BN parameters or buffers any more,
  so load checkpoints *before* folding.
- :func:`use_channels_last` stores conv weights channels-last and makes
  the backbone's input channels-last, which oneDNN convolutions (CPU) and
  cuDNN tensor-core kernels (GPU) prefer; the values are unchanged.
- :func:`use_autocast` runs backbone, neck and head under
  ``torch.autocast`` (bf16 on CPUs with AVX-512 bf16 / AMX, fp16 or bf16
  on GPUs) and hands fp32 outputs to the post-processing. This changes the
  outputs; ``tools/analysis/benchmark.py --dtype ... --accuracy`` measures
  by how much.
- :func:`tune_cpu_allocator` stops glibc from returning large blocks to
  the kernel after each use, so the big temporaries of a forward pass
  (stride-4 feature maps, full-size masks) are not page-faulted in again
  on every image. It is process-wide.
- :func:`compile_backbone_and_neck`: ``torch.compile`` with inductor's
  weight freezing for the convolutional part.
- :func:`use_low_rank_features` has the neck hand the head its last 1x1
  conv unapplied (:class:`rap_sam.models.layers.LowRankFeatureMap`): the
  decoder's products read the 128-channel aggregated map instead of the
  256-channel output, which is never computed. Equal to float rounding.
- :func:`optimize_for_inference` applies the exact ones (folding,
  channels-last, low-rank features, ``eval``) and, on request,
  compilation.
"""
import ctypes
import ctypes.util
import functools
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'fold_batch_norms', 'use_channels_last', 'use_autocast',
    'tune_cpu_allocator', 'compile_backbone_and_neck', 'use_low_rank_features',
    'optimize_for_inference', 'parse_dtype'
]


# ----------------------------------------------------------------------
# BatchNorm folding
# ----------------------------------------------------------------------
def _bn_scale_shift(bn: _BatchNorm):
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError('only BatchNorms with running statistics fold')
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


@torch.no_grad()
def _fold(conv: nn.Module, bn: _BatchNorm) -> None:
    """conv <- bn(conv(.)) for Conv{1,2,3}d, ConvTranspose2d and mmcv's
    (modulated) deformable convs (weights ``[Cout, Cin / g, k, k]``)."""
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight
    if isinstance(conv, nn.ConvTranspose2d):
        groups = conv.groups
        cin, cout_g = weight.shape[:2]
        w = weight.double().view(groups, cin // groups, cout_g, -1)
        w = w * scale.view(groups, 1, cout_g, 1)
        new_weight = w.view_as(weight)
    else:
        new_weight = weight.double() * scale.view(-1,
                                                  *([1] * (weight.dim() - 1)))
    bias = getattr(conv, 'bias', None)
    new_bias = shift if bias is None else bias.double() * scale + shift
    weight.copy_(new_weight.to(weight.dtype))
    if bias is None:
        conv.bias = nn.Parameter(
            new_bias.to(weight.dtype), requires_grad=weight.requires_grad)
    else:
        bias.copy_(new_bias.to(bias.dtype))


def _is_conv(module: nn.Module) -> bool:
    if isinstance(module,
                  (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
        return True
    # mmcv's ModulatedDeformConv2d passes its bias (added by _fold) to the
    # op; its DeformConv2d has no bias, so it does not fold.
    return type(module).__name__ == 'ModulatedDeformConv2d'


def _foldable(conv, bn) -> bool:
    return _is_conv(conv) and isinstance(bn, _BatchNorm) and \
        bn.track_running_stats and bn.running_mean is not None


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every recognised (conv, BatchNorm) pair in place; the BNs
    become ``nn.Identity``. The model must be in eval mode. Returns the
    number of folded pairs.

    Recognised: mmdet ResNet stems and ``BasicBlock`` / ``Bottleneck``
    (``convN`` / ``normN_name``), mmcv ``ConvModule`` (conv before norm),
    consecutive ``(conv, BN)`` in ``nn.Sequential`` and RAP-SAM's
    ``DeformUpsampleLayer`` (``dcn`` / ``dcn_bn``, ``up_sample`` /
    ``up_bn``).
    """
    if model.training:
        raise RuntimeError('fold_batch_norms needs a model in eval mode '
                           '(it folds the running statistics)')
    count = 0
    for module in list(model.modules()):
        pairs = []
        # mmdet ResNet stem and blocks: convN with normN_name.
        for i in (1, 2, 3):
            name = getattr(module, f'norm{i}_name', None)
            conv = getattr(module, f'conv{i}', None)
            if isinstance(name, str) and conv is not None:
                pairs.append((f'conv{i}', name))
        # mmcv ConvModule (norm after conv).
        if type(module).__name__ == 'ConvModule' and getattr(
                module, 'with_norm', False) and tuple(
                    getattr(module, 'order', ())).index('conv') < tuple(
                        module.order).index('norm'):
            pairs.append(('conv', module.norm_name))
        # RAP-SAM's deformable upsampling step.
        if hasattr(module, 'dcn') and hasattr(module, 'dcn_bn'):
            pairs += [('dcn', 'dcn_bn'), ('up_sample', 'up_bn')]
        for conv_name, bn_name in pairs:
            conv = getattr(module, conv_name)
            bn = getattr(module, bn_name)
            if _foldable(conv, bn):
                _fold(conv, bn)
                setattr(module, bn_name, nn.Identity())
                count += 1
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (_, conv), (bn_key, bn) in zip(children, children[1:]):
                if _foldable(conv, bn):
                    _fold(conv, bn)
                    module._modules[bn_key] = nn.Identity()
                    count += 1
    return count


# ----------------------------------------------------------------------
# channels-last
# ----------------------------------------------------------------------
def _channels_last_input(module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return (x.contiguous(memory_format=torch.channels_last), ) + tuple(
            args[1:])
    return None


def use_channels_last(model: nn.Module) -> nn.Module:
    """4-d weights channels-last, and a pre-hook making the backbone's (or,
    without one, the model's) input channels-last. Values are unchanged."""
    model.to(memory_format=torch.channels_last)
    target = getattr(model, 'backbone', model)
    if not getattr(target, '_rap_sam_channels_last', False):
        target.register_forward_pre_hook(_channels_last_input)
        target._rap_sam_channels_last = True
    return model


# ----------------------------------------------------------------------
# low-rank neck output
# ----------------------------------------------------------------------
def use_low_rank_features(model: nn.Module, enabled: bool = True) -> int:
    """Switch every module with a ``low_rank_output`` flag (RAP-SAM's
    neck); returns how many. Only eval-mode forwards use it."""
    count = 0
    for module in model.modules():
        if hasattr(module, 'low_rank_output'):
            module.low_rank_output = enabled
            count += 1
    return count


# ----------------------------------------------------------------------
# mixed precision
# ----------------------------------------------------------------------
_DTYPES = {
    'fp32': torch.float32,
    'float32': torch.float32,
    'bf16': torch.bfloat16,
    'bfloat16': torch.bfloat16,
    'fp16': torch.float16,
    'float16': torch.float16,
}


def parse_dtype(name) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise ValueError(f'dtype must be one of {sorted(_DTYPES)}, '
                         f'got {name!r}')
    return _DTYPES[name]


def _to_float(x):
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float(v) for v in x)
    return x


def _autocast_forward(forward, device_type, dtype, to_float):

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with torch.autocast(device_type=device_type, dtype=dtype):
            out = forward(*args, **kwargs)
        return _to_float(out) if to_float else out

    return wrapped


def use_autocast(model: nn.Module,
                 dtype='bf16',
                 device_type: Optional[str] = None) -> nn.Module:
    """Run ``backbone``, ``neck`` and ``panoptic_head`` under
    ``torch.autocast(dtype)``; the head's outputs are cast back to fp32,
    so the post-processing (upsampling, thresholds, fusion) stays fp32.
    ``dtype='fp32'`` is a no-op. Approximate: measure its effect."""
    dtype = parse_dtype(dtype)
    if dtype == torch.float32:
        return model
    if device_type is None:
        device_type = next(model.parameters()).device.type
    for name in ('backbone', 'neck', 'panoptic_head'):
        module = getattr(model, name, None)
        if module is None:
            continue
        module.forward = _autocast_forward(
            module.forward,
            device_type,
            dtype,
            to_float=name == 'panoptic_head')
    return model


# ----------------------------------------------------------------------
# allocator
# ----------------------------------------------------------------------
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator(trim_threshold: int = (1 << 31) - 1) -> bool:
    """Keep freed memory in the process (glibc only): no mmap'd blocks and
    no trimming below ``trim_threshold`` bytes. Large temporaries are then
    reused instead of page-faulted in anew for every forward pass, which on
    a VM costs as much as the arithmetic of an elementwise op. Returns
    whether glibc accepted the settings. Process-wide: it speeds up every
    model in the process alike."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1) and ok
    return ok


# ----------------------------------------------------------------------
def compile_backbone_and_neck(model: nn.Module) -> nn.Module:
    """``torch.compile`` the backbone's and the neck's forward, with
    inductor's freezing (weights become constants: oneDNN prepacks them
    once instead of reordering them at every call). Run the model under
    ``torch.no_grad`` / ``inference_mode``; the first call compiles (about
    half a minute on 2 cores)."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    for name in ('backbone', 'neck'):
        module = getattr(model, name, None)
        if module is not None:
            module.forward = torch.compile(module.forward)
    return model


def optimize_for_inference(model: nn.Module,
                           fold_bn: bool = True,
                           channels_last: bool = True,
                           low_rank_features: bool = True,
                           compile: bool = False) -> nn.Module:
    """``eval()``, BN folding, channels-last and low-rank neck output (the
    exact optimisations: outputs equal to float rounding), and optionally
    ``torch.compile`` of backbone and neck. Returns the model (changed in
    place)."""
    model.eval()
    if fold_bn:
        fold_batch_norms(model)
    if channels_last:
        use_channels_last(model)
    if low_rank_features:
        use_low_rank_features(model)
    if compile:
        compile_backbone_and_neck(model)
    return model
