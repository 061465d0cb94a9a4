"""Weights stored in the dtype autocast runs their layers in.

Under ``torch.autocast`` a linear or convolution layer casts its fp32
weight (and bias) to bf16 / fp16 at every call: the whole backbone's
weights per image (about 280 MB of memory traffic for RAP-SAM R50), and
109 casts per click in the prompt decoder. Cast once, the layers find
them in the autocast dtype and autocast leaves them as they are: the same
rounded values, so the same outputs bit for bit, without the per-call
copies.

Only layers whose parameters reach autocast's low-precision operators
and nothing else are cast: linear layers, convolutions (transposed too)
and mmcv's modulated deformable conv (whose gather + GEMM casts its weight
to the input's dtype). Norm layers stay fp32 (autocast runs them in
fp32), as do ``nn.MultiheadAttention``'s input projections, whose bias is
also added outside a product (in fp32 to a bf16 product: a cast copy would
round that sum differently). Under fp16, modules marked
``fp32_under_fp16`` (the kernel updates, which take sums over thousands of
pixels: :func:`rap_sam.models.layers.decoder_stage.update_with_pooled`)
run in fp32 and keep their weights.
"""
import torch
import torch.nn as nn
from mmcv.ops import ModulatedDeformConv2d

#: Layers whose weight and bias feed only the operators autocast runs in
#: low precision.
AUTOCAST_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, ModulatedDeformConv2d)


def cast_autocast_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights and biases of ``model``'s :data:`AUTOCAST_LAYERS`
    in ``dtype`` (in place; values rounded as autocast rounds them). For
    inference under ``torch.autocast(dtype=dtype)`` only: outside autocast
    these layers would meet fp32 inputs with ``dtype`` weights.

    Returns:
        int: The number of parameters cast.
    """
    kept = set()
    if dtype == torch.float16:
        for outer in model.modules():
            if getattr(outer, 'fp32_under_fp16', False):
                kept.update(id(m) for m in outer.modules())
    cast = 0
    for module in model.modules():
        if not isinstance(module, AUTOCAST_LAYERS) or id(module) in kept:
            continue
        for param in module.parameters(recurse=False):
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
                cast += 1
    return cast
