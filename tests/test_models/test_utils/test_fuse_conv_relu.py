"""oneDNN conv + ReLU fusion of the folded ResNet: the same outputs as
mmdet's forward, which still runs wherever the fused kernel does not apply
(autograd, autocast, training, unfolded blocks)."""
import copy

import pytest
import torch
import torch.nn as nn
from mmdet.models import ResNet
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck

from rap_sam.models.utils import fold_batch_norms
from rap_sam.models.utils.fuse_conv_relu import (FusedBasicBlock,
                                                 FusedBottleneck,
                                                 FusedStemResNet,
                                                 fuse_conv_relu)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-6)).item()


def folded_resnet(depth, **kwargs):
    torch.manual_seed(0)
    model = ResNet(
        depth,
        out_indices=(0, 1, 2, 3),
        base_channels=8,
        stem_channels=8,
        **kwargs)
    model.eval()  # mmdet's ResNet.train returns None
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.bias.normal_()
    fold_batch_norms(model)
    return model


@pytest.mark.parametrize('depth,blocks,block_type', [(50, 16, FusedBottleneck),
                                                     (18, 8, FusedBasicBlock)])
@pytest.mark.parametrize('channels_last', [True, False])
def test_fused_resnet_keeps_outputs(depth, blocks, block_type, channels_last):
    plain = folded_resnet(depth)
    fused = copy.deepcopy(plain)
    assert fuse_conv_relu(fused) == blocks + 1  # and the stem
    assert type(fused) is FusedStemResNet
    assert sum(type(m) is block_type for m in fused.modules()) == blocks
    assert fused.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, 3, 64, 96)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)
        fused.to(memory_format=torch.channels_last)
    with torch.no_grad():
        want = plain(x)
        got = fused(x)
    assert len(got) == 4
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert rel_err(a, b) < 1e-6
        assert a.min() == 0  # the last ReLU ran
        if channels_last:
            assert a.is_contiguous(memory_format=torch.channels_last)
    # Fusing again finds nothing left to switch.
    assert fuse_conv_relu(fused) == 0


def test_mmdet_forward_where_the_fused_kernel_does_not_apply():
    plain = folded_resnet(50)
    fused = copy.deepcopy(plain)
    fuse_conv_relu(fused)
    x = torch.randn(1, 3, 32, 64)
    # Autograd: mmdet's forward, gradients flow.
    got = fused(x)
    want = plain(x)
    assert got[-1].requires_grad
    assert torch.equal(got[-1], want[-1])
    got[-1].sum().backward()
    assert fused.conv1.weight.grad is not None
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        got = fused(x)
        want = plain(x)
    assert got[-1].dtype == torch.bfloat16
    assert torch.equal(got[-1], want[-1])
    # Traced (torch.onnx.export): mmdet's forward, standard operators.
    with torch.no_grad():  # as export traces
        graph = torch.jit.trace(fused, x, check_trace=False).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    assert 'aten::_convolution' in kinds
    assert not any(k.startswith('mkldnn::') for k in kinds)
    # A hook on a conv: mmdet's forward runs it.
    seen = []
    fused.layer1[0].conv2.register_forward_hook(
        lambda m, args, out: seen.append(out.shape))
    fused.conv1.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        got = fused(x)
        want = plain(x)
    assert seen == [(1, 3, 32, 64), (1, 8, 8, 16)]
    assert rel_err(got[-1], want[-1]) < 1e-6


def test_only_folded_plain_blocks_are_fused():
    model = ResNet(18, base_channels=8, stem_channels=8)
    model.eval()
    assert fuse_conv_relu(model) == 0  # BatchNorms not folded
    assert type(model.layer1[0]) is BasicBlock
    deep = folded_resnet(50, deep_stem=True)
    assert fuse_conv_relu(deep) == 16  # the blocks, not the deep stem
    assert type(deep) is ResNet
    assert type(deep.layer1[0]) is FusedBottleneck
    assert issubclass(FusedBottleneck, Bottleneck)


def test_mmdet_forward_where_onednn_cannot_fuse(monkeypatch):
    from rap_sam.models.utils import fuse_conv_relu as module
    assert module.onednn_fusion_works()  # on the CPUs the suite runs on
    plain = folded_resnet(50)
    fused = copy.deepcopy(plain)
    fuse_conv_relu(fused)

    def unsupported(*args, **kwargs):
        raise RuntimeError('no post-op fusion here')

    # A torch build or CPU whose fused convs raise: found once, then
    # mmdet's forward runs (no error, the same outputs).
    monkeypatch.setattr(module, 'conv2d_relu', unsupported)
    module.onednn_fusion_works.cache_clear()
    try:
        assert not module.onednn_fusion_works()
        x = torch.randn(1, 3, 32, 64)
        with torch.no_grad():
            got = fused(x)
            want = plain(x)
        assert torch.equal(got[-1], want[-1])
    finally:
        module.onednn_fusion_works.cache_clear()


@pytest.mark.parametrize('channels_last', [True, False])
def test_downsample_shortcut_merged_into_conv3(channels_last):
    """A stage's first block runs conv3 and its 1x1 downsample as one conv
    of the concatenated channels (strides 1 and 2), remade when the
    weights change; hooks on the downsample get mmdet's forward."""
    plain = folded_resnet(50)
    fused = copy.deepcopy(plain)
    fuse_conv_relu(fused)
    firsts = [getattr(fused, f'layer{i}')[0] for i in (1, 2, 3, 4)]
    assert [b.downsample[0].stride for b in firsts] == [(1, 1)] + [(2, 2)] * 3
    x = torch.randn(1, 3, 64, 96)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)
        fused.to(memory_format=torch.channels_last)
    with torch.no_grad():
        want = plain(x)
        got = fused(x)
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-6
        assert a.is_contiguous(memory_format=torch.channels_last
                               if channels_last else torch.contiguous_format)
    for block in firsts:
        _, weight, bias = block._merged_conv3
        cout, cmid = block.conv3.weight.shape[:2]
        assert weight.shape == (cout, cmid + block.downsample[0].in_channels,
                                1, 1)
        assert torch.equal(bias, block.conv3.bias + block.downsample[0].bias)
    assert '_merged_conv3' not in fused.layer1[1].__dict__  # no downsample
    assert fused.state_dict().keys() == plain.state_dict().keys()

    # New weights (load_state_dict copies in place): the merged weights
    # follow them.
    other = folded_resnet(50)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
        if channels_last:
            other.to(memory_format=torch.channels_last)
        fused.load_state_dict(other.state_dict())
        want = other(x)
        got = fused(x)
    for a, b in zip(got, want):
        assert rel_err(a, b) < 1e-6

    # A hook on the downsample conv: mmdet's forward calls it.
    seen = []
    fused.layer2[0].downsample[0].register_forward_hook(
        lambda m, args, out: seen.append(out.shape))
    with torch.no_grad():
        fused(x)
    assert seen == [(1, 64, 8, 12)]


@pytest.mark.parametrize('depth', [50, 18])
def test_fused_resnet_under_bf16_autocast(depth, monkeypatch):
    """Under CPU bf16 autocast with the conv weights stored in bf16 (as
    prepare(precision='bf16') stores them) the blocks run oneDNN's fused
    convs in bf16 where this CPU has them (the sums taken before rounding
    to bf16: within bf16 rounding of mmdet's autocast forward), and mmdet's
    forward where it has not; with fp32 weights always mmdet's forward."""
    from rap_sam.models.utils import cast_autocast_weights
    from rap_sam.models.utils import fuse_conv_relu as module
    plain = folded_resnet(depth).to(memory_format=torch.channels_last)
    fused = copy.deepcopy(plain)
    fuse_conv_relu(fused)
    x = torch.randn(1, 3, 64, 96).contiguous(memory_format=torch.channels_last)
    calls = []
    kernel = module.conv2d_relu

    def spy(*args, **kwargs):
        calls.append(args[1].dtype)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(module, 'conv2d_relu', spy)
    # fp32 weights under autocast: mmdet's forward, bit for bit.
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert torch.equal(fused(x)[-1], plain(x)[-1])
    assert calls == []
    for model in (plain, fused):
        cast_autocast_weights(model, torch.bfloat16)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        want = plain(x)
        got = fused(x)
    with torch.no_grad():
        exact = folded_resnet(depth)(x)
    for a, b, c in zip(got, want, exact):
        assert a.dtype == b.dtype == torch.bfloat16
        assert a.is_contiguous(memory_format=torch.channels_last)
        # Each within bf16 rounding of the fp32 network.
        assert rel_err(a.float(), c) < 3e-2
        assert rel_err(b.float(), c) < 3e-2
    if module.onednn_fusion_works(torch.bfloat16):
        assert calls and set(calls) == {torch.bfloat16}
        assert not all(torch.equal(a, b) for a, b in zip(got, want))
    else:
        assert calls == []
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_fusion_check_per_dtype(monkeypatch):
    """The tiny-conv check runs once per dtype: a dtype whose fused convs
    raise here runs mmdet's forward, the other still fuses."""
    from rap_sam.models.utils import fuse_conv_relu as module
    kernel = module.conv2d_relu

    def no_bf16(conv, x, residual=None):
        if x.dtype == torch.bfloat16:
            raise RuntimeError('no bf16 kernel')
        return kernel(conv, x, residual)

    monkeypatch.setattr(module, 'conv2d_relu', no_bf16)
    module.onednn_fusion_works.cache_clear()
    try:
        assert module.onednn_fusion_works(torch.float32)
        assert not module.onednn_fusion_works(torch.bfloat16)
        # Module.to / .double convert in place: one conv per dtype, so
        # each None below has the one reason its comment gives.
        conv = nn.Conv2d(3, 4, 3)
        bf16_conv = copy.deepcopy(conv).to(torch.bfloat16)
        double_conv = copy.deepcopy(conv).double()
        x = torch.randn(1, 3, 8, 8)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            assert module.fusion_dtype(x, bf16_conv) is None  # check failed
        with torch.no_grad():
            assert module.fusion_dtype(x, conv) == torch.float32
            assert module.fusion_dtype(x.double(),
                                       double_conv) is None  # no fp64
        assert module.fusion_dtype(x, conv) is None  # autograd on
    finally:
        module.onednn_fusion_works.cache_clear()
