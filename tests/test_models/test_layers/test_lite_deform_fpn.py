"""LiteDeformFPN: the inference paths (sums into the deformable steps'
outputs; with channels-last features the lateral convs and conv_a2 adding
as oneDNN post-ops) compute what the autograd path does."""
import pytest
import torch

from rap_sam.models.layers import LiteDeformFPN


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('channels_last', [False, True])
def test_no_grad_path_equals_the_autograd_path(channels_last):
    torch.manual_seed(0)
    fpn = LiteDeformFPN((8, 16, 32, 64), 8, dcn_impl='torch').eval()
    with torch.no_grad():
        for layer in fpn.deform_layers():
            layer.dcn_offset.weight.normal_(std=0.3)
    feats = [
        torch.randn(2, c, 32 // s, 48 // s)
        for c, s in ((8, 1), (16, 2), (32, 4), (64, 8))
    ]
    if channels_last:
        fpn.to(memory_format=torch.channels_last)
        feats = [
            f.contiguous(memory_format=torch.channels_last) for f in feats
        ]
    with torch.no_grad():
        fast = fpn(feats)
        fpn.gemm_weight_layout()
        laid_out = fpn(feats)
    slow = fpn(feats)
    assert fast.shape == (2, 8, 32, 48)
    assert torch.equal(laid_out, fast)
    if channels_last:
        # oneDNN may block the fused convs differently: float rounding.
        assert rel_err(fast, slow.detach()) < 1e-6
        assert fast.is_contiguous(memory_format=torch.channels_last)
    else:
        assert torch.equal(fast, slow.detach())
    for layer in fpn.deform_layers():
        assert layer.dcn.weight.permute(1, 2, 3, 0).is_contiguous()
    slow.sum().backward()
    assert fpn.lateral_conv3.weight.grad.abs().sum() > 0
