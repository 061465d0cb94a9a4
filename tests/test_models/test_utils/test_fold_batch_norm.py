"""BatchNorm folding: mmdet's ResNet and mmcv's ConvModule by the typed
function, RAP-SAM's deformable step by its own switch_to_deploy; the
outputs stay those of the unfolded modules (to float rounding)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models import ResNet

from rap_sam.models.layers import DeformUpsampleLayer
from rap_sam.models.utils import fold_batch_norms, fold_conv_bn


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-6)).item()


def randomize_bn_(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + .5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def no_batch_norms(model):
    return not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in model.modules())


@pytest.mark.parametrize('depth,deep_stem', [(18, False), (50, False),
                                             (18, True)])
def test_fold_resnet(depth, deep_stem):
    model = ResNet(depth, out_indices=(0, 1, 2, 3), deep_stem=deep_stem)
    randomize_bn_(model)
    model.eval()
    folded = copy.deepcopy(model)
    count = fold_batch_norms(folded)
    # stem (1, or 3 for the deep stem) + 2 or 3 per block + one per
    # downsampling.
    stem = 3 if deep_stem else 1
    assert count == (stem + 8 * 2 + 3 if depth == 18 else stem + 16 * 3 + 4)
    assert no_batch_norms(folded)
    assert fold_batch_norms(folded) == 0  # nothing left to fold
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(folded(x), model(x)):
            assert rel_err(a, b) < 1e-5


def test_fold_conv_module_and_leave_the_rest():
    """ConvModule's norm after its conv folds; a bare conv + BN pair in a
    Sequential is not a class the function knows, so it stays."""
    model = nn.Sequential(
        ConvModule(3, 4, 3, padding=1, norm_cfg=dict(type='BN')),
        ConvModule(
            4, 5, 1, norm_cfg=dict(type='BN'), order=('norm', 'conv', 'act')),
        nn.Conv2d(5, 5, 1), nn.BatchNorm2d(5))
    randomize_bn_(model)
    model.eval()
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 1
    assert isinstance(folded[0].norm, nn.Identity)
    assert isinstance(folded[1].norm, nn.BatchNorm2d)
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        assert rel_err(folded(x), model(x)) < 1e-5


def test_fold_needs_eval_mode():
    with pytest.raises(RuntimeError, match='eval'):
        fold_batch_norms(ResNet(18))
    with pytest.raises(RuntimeError, match='eval'):
        DeformUpsampleLayer(4, 2).switch_to_deploy()


@pytest.mark.parametrize('groups', [1, 2])
def test_fold_conv_transpose(groups):
    conv = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=groups)
    bn = nn.BatchNorm2d(6)
    model = nn.Sequential(conv, bn)
    randomize_bn_(model)
    model.eval()
    x = torch.randn(2, 4, 5, 6)
    with torch.no_grad():
        expected = model(x)
        fold_conv_bn(conv, bn)
        assert rel_err(conv(x), expected) < 1e-5
    with pytest.raises(TypeError):
        fold_conv_bn(nn.Linear(2, 2), bn)


def test_deform_upsample_layer_switch_to_deploy():
    layer = DeformUpsampleLayer(8, 6)
    randomize_bn_(layer)
    with torch.no_grad():
        for p in layer.dcn_offset.parameters():
            p.normal_(std=0.3)
    layer.eval()
    folded = copy.deepcopy(layer)
    folded.switch_to_deploy()
    folded.switch_to_deploy()  # a second call changes nothing
    assert no_batch_norms(folded)
    assert folded.dcn.bias is not None and folded.up_sample.bias is not None
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        for impl in ('torch', 'mmcv', 'onnx'):
            folded.dcn_impl = layer.dcn_impl = impl
            assert rel_err(folded(x), layer(x)) < 1e-5
