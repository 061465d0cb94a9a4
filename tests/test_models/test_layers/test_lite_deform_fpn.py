"""LiteDeformFPN: the inference path (sums into the deformable steps'
outputs) computes exactly what the autograd path does."""
import torch

from rap_sam.models.layers import LiteDeformFPN


def test_no_grad_path_equals_the_autograd_path():
    torch.manual_seed(0)
    fpn = LiteDeformFPN((8, 16, 32, 64), 8, dcn_impl='torch').eval()
    with torch.no_grad():
        for layer in fpn.deform_layers():
            layer.dcn_offset.weight.normal_(std=0.3)
    feats = [
        torch.randn(2, c, 32 // s, 48 // s)
        for c, s in ((8, 1), (16, 2), (32, 4), (64, 8))
    ]
    with torch.no_grad():
        fast = fpn(feats)
        fpn.gemm_weight_layout()
        laid_out = fpn(feats)
    slow = fpn(feats)
    assert fast.shape == (2, 8, 32, 48)
    assert torch.equal(fast, slow.detach())
    assert torch.equal(laid_out, fast)
    for layer in fpn.deform_layers():
        assert layer.dcn.weight.permute(1, 2, 3, 0).is_contiguous()
    slow.sum().backward()
    assert fpn.lateral_conv3.weight.grad.abs().sum() > 0
