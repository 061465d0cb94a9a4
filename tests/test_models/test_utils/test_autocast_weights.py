"""Weights stored in the autocast dtype: a bf16 model gives the outputs
of autocast casting its fp32 weights at every call, bit for bit."""
import copy

import pytest
import torch
import torch.nn as nn
from helpers import build_model, image_batch
from mmcv.ops import ModulatedDeformConv2d

from rap_sam.deploy import prepare
from rap_sam.models.layers import KernelUpdator
from rap_sam.models.utils import cast_autocast_weights
from rap_sam.models.utils.autocast_weights import AUTOCAST_LAYERS


def _float_weights(model):
    """The prepared model's cast weights back in fp32 (exactly: bf16 values
    are fp32 values), so autocast casts them per call again."""
    for module in model.modules():
        if isinstance(module, AUTOCAST_LAYERS):
            for param in module.parameters(recurse=False):
                param.data = param.data.float()
    return model


def test_casts_only_the_layers_autocast_runs_in_low_precision():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LayerNorm(4),
        nn.MultiheadAttention(4, 2), nn.Linear(4, 4),
        ModulatedDeformConv2d(4, 4, 3, padding=1, bias=False))
    assert cast_autocast_weights(model, torch.bfloat16) == 7
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    low = {
        '0.weight', '0.bias', '4.weight', '4.bias', '5.weight',
        '3.out_proj.weight', '3.out_proj.bias'
    }
    # The attention's out_proj is an nn.Linear; its input projections and
    # the norms stay fp32.
    assert {n for n, d in dtypes.items() if d == torch.bfloat16} == low
    assert dtypes['3.in_proj_weight'] == dtypes['1.weight'] == \
        dtypes['2.weight'] == torch.float32
    # A second call has nothing left to cast.
    assert cast_autocast_weights(model, torch.bfloat16) == 0


@pytest.mark.parametrize('prompts', [False, True])
def test_bf16_model_equals_per_call_casts(prompts, monkeypatch):
    from rap_sam.models.utils import fuse_conv_relu

    # The backbone's fused bf16 convs (which need the weights stored in
    # bf16) round once fewer: tests/test_models/test_utils/
    # test_fuse_conv_relu.py. Here both models run the plain ops.
    monkeypatch.setattr(
        fuse_conv_relu,
        'onednn_fusion_works',
        lambda dtype=torch.float32: False)
    model = build_model('rap_sam/eval_rap_sam_coco.py', seed=4)
    img = torch.randint(0, 256, (96, 160, 3), dtype=torch.uint8).numpy()
    cast = prepare(copy.deepcopy(model), 'fast', precision='bf16')
    assert cast.backbone.conv1.weight.dtype == torch.bfloat16
    assert cast.panoptic_head.mask_heads[0].fc_mask.weight.dtype == \
        torch.bfloat16
    per_call = _float_weights(copy.deepcopy(cast))
    assert per_call.backbone.conv1.weight.dtype == torch.float32
    boxes = [torch.tensor([[40., 30., 46., 36.]])] if prompts else None
    outputs = []
    for m in (cast, per_call):
        data = m.data_preprocessor(image_batch([img], boxes))
        with torch.no_grad():
            feats = m.extract_feat(data['inputs'])
            outputs.append(m.predict_head(feats, data['data_samples']))
    for ours, theirs in zip(*outputs):
        assert ours.dtype == theirs.dtype == torch.float32
        assert torch.equal(ours, theirs)


def test_kernel_updates_keep_fp32_weights_under_fp16_only():
    """They run in fp32 under fp16 autocast (sums over many pixels pass
    fp16's range); under bf16 they are cast like every linear layer."""
    for dtype, kept in ((torch.float16, torch.float32), (torch.bfloat16,
                                                         torch.bfloat16)):
        model = nn.Sequential(KernelUpdator(8, 8), nn.Linear(8, 8))
        cast_autocast_weights(model, dtype)
        assert model[0].dynamic_layer.weight.dtype == kept
        assert model[0].fc_layer.bias.dtype == kept
        assert model[0].norm_in.weight.dtype == torch.float32
        assert model[1].weight.dtype == dtype
