"""The opt-in inference optimisations: BN folding and channels-last keep
the outputs (to float rounding), autocast runs and hands fp32 to the
post-processing."""
import copy
import os.path as osp

import cv2
import pytest
import torch
import torch.nn as nn
from helpers import REPO, build_model, image_batch
from mmdet.models import ResNet

from rap_sam.models.layers import DeformUpsampleLayer
from rap_sam.models.utils.inference_mode import (fold_batch_norms,
                                                 optimize_for_inference,
                                                 parse_dtype, use_autocast,
                                                 use_channels_last)


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


@pytest.mark.parametrize('depth', [18, 50])
def test_fold_resnet(depth):
    model = ResNet(depth, out_indices=(0, 1, 2, 3))
    randomize_bn_(model)
    model.eval()
    folded = copy.deepcopy(model)
    count = fold_batch_norms(folded)
    # stem + 2 or 3 per block + one per downsampling.
    assert count == (1 + 8 * 2 + 3 if depth == 18 else 1 + 16 * 3 + 4)
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in folded.modules())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(folded(x), model(x)):
            assert rel_err(a, b) < 1e-5


def test_fold_deform_upsample_layer():
    layer = DeformUpsampleLayer(8, 6)
    randomize_bn_(layer)
    with torch.no_grad():
        for p in layer.dcn_offset.parameters():
            p.normal_(std=0.3)
    layer.eval()
    folded = copy.deepcopy(layer)
    assert fold_batch_norms(folded) == 2
    assert folded.dcn.bias is not None and folded.up_sample.bias is not None
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        for impl in ('torch', 'mmcv'):
            folded.dcn_impl = layer.dcn_impl = impl
            assert rel_err(folded(x), layer(x)) < 1e-5


def test_fold_needs_eval_mode():
    with pytest.raises(RuntimeError):
        fold_batch_norms(nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)))


def test_fold_sequential_and_conv_transpose():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2),
        nn.BatchNorm2d(6))
    randomize_bn_(model)
    model.eval()
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 2
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        assert rel_err(folded(x), model(x)) < 1e-5


@pytest.fixture(scope='module')
def model_and_data():
    model = build_model('rap_sam/eval_rap_sam_coco.py', seed=4)
    model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.3
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    img = cv2.resize(img, (192, 128), interpolation=cv2.INTER_AREA)
    return model, img


def test_optimized_model_keeps_outputs(model_and_data):
    model, img = model_and_data
    fast = optimize_for_inference(copy.deepcopy(model))
    batch = image_batch([img])
    data = model.data_preprocessor(batch)
    with torch.no_grad():
        ours = fast(data['inputs'], data['data_samples'], mode='tensor')
        ref = model(data['inputs'], data['data_samples'], mode='tensor')
    for a_list, b_list in zip(ours[:3], ref[:3]):
        for a, b in zip(a_list, b_list):
            assert rel_err(a, b) < 1e-4
    with torch.no_grad():
        got = fast.test_step(image_batch([img]))[0]
        want = model.test_step(image_batch([img]))[0]
    agree = (got.pred_panoptic_seg.sem_seg == want.pred_panoptic_seg.sem_seg
             ).float().mean()
    assert agree > 0.999
    assert torch.equal(got.pred_instances.labels, want.pred_instances.labels)
    assert (got.pred_instances.masks == want.pred_instances.masks
            ).float().mean() > 0.999


def test_channels_last_hook(model_and_data):
    model, img = model_and_data
    fast = use_channels_last(copy.deepcopy(model))
    seen = []
    fast.backbone.conv1.register_forward_pre_hook(lambda m, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)))
    data = model.data_preprocessor(image_batch([img]))
    with torch.no_grad():
        fast.extract_feat(data['inputs'])
    assert seen == [True]


def test_autocast_bf16(model_and_data):
    model, img = model_and_data
    half = use_autocast(copy.deepcopy(model), 'bf16', device_type='cpu')
    data = model.data_preprocessor(image_batch([img]))
    with torch.no_grad():
        cls, masks, ious, _ = half.panoptic_head.predict(
            half.extract_feat(data['inputs']), data['data_samples'])
        results = half.test_step(image_batch([img]))
    assert cls.dtype == masks.dtype == torch.float32
    assert 'pred_panoptic_seg' in results[0]
    assert parse_dtype('fp16') == torch.float16
    with pytest.raises(ValueError):
        parse_dtype('int8')


@pytest.mark.parametrize('prompts', [False, True])
def test_autocast_bf16_on_the_optimized_model(model_and_data, prompts):
    """bf16 autocast over the low-rank map and the gather pooling: fp32
    outputs near the fp32 model's."""
    model, img = model_and_data
    half = use_autocast(
        optimize_for_inference(copy.deepcopy(model)),
        'bf16',
        device_type='cpu')
    boxes = [torch.tensor([[40., 30., 46., 36.]])] if prompts else None
    data = model.data_preprocessor(image_batch([img], boxes))
    with torch.no_grad():
        cls, masks, _, _ = half.panoptic_head.predict(
            half.extract_feat(data['inputs']), data['data_samples'])
        _, ref_masks, _, _ = model.panoptic_head.predict(
            model.extract_feat(data['inputs']), data['data_samples'])
    assert masks.dtype == torch.float32 and torch.isfinite(masks).all()
    # bf16 keeps 8 bits of mantissa: most mask signs survive.
    agree = ((masks > 0) == (ref_masks > 0)).float().mean()
    assert agree > 0.9


def test_compiled_backbone_and_neck_keep_outputs(model_and_data):
    """``optimize_for_inference(compile=True)``: inductor with frozen
    weights over backbone and neck gives the eager model's outputs."""
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters
    model, img = model_and_data
    freezing = inductor_config.freezing
    counters.clear()
    try:
        compiled = optimize_for_inference(copy.deepcopy(model), compile=True)
        assert inductor_config.freezing
        data = model.data_preprocessor(image_batch([img]))
        with torch.no_grad():
            ours = compiled(
                data['inputs'], data['data_samples'], mode='tensor')
            ref = model(data['inputs'], data['data_samples'], mode='tensor')
        # backbone and neck each became a compiled graph
        assert counters['stats']['unique_graphs'] >= 2
    finally:
        inductor_config.freezing = freezing
        torch._dynamo.reset()
    # inductor orders reductions its own way: the project's equivalence
    # tolerance (tests/test_models/test_independent_equivalence.py)
    for a_list, b_list in zip(ours[:3], ref[:3]):
        for a, b in zip(a_list, b_list):
            assert rel_err(a, b) < 1e-3
