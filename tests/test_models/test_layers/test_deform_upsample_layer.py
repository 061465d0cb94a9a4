"""DeformUpsampleLayer: the inference path (in-place ReLUs, weights laid out
for the gather + GEMM) computes exactly what the autograd path does."""
import pytest
import torch

from rap_sam.models.layers import DeformUpsampleLayer


def seeded_layer(cin=16, cout=8):
    torch.manual_seed(0)
    layer = DeformUpsampleLayer(cin, cout, dcn_impl='torch')
    with torch.no_grad():
        for p in layer.dcn_offset.parameters():
            p.normal_(std=0.5)  # offsets that leave the image
        for bn in (layer.dcn_bn, layer.up_bn):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
    return layer.eval()


@pytest.mark.parametrize('folded', [False, True])
def test_no_grad_path_equals_the_autograd_path(folded):
    layer = seeded_layer()
    if folded:
        layer.switch_to_deploy()
    x = torch.randn(2, 16, 7, 10)
    with torch.no_grad():
        fast = layer(x)
    slow = layer(x)
    assert slow.requires_grad
    assert fast.shape == (2, 8, 14, 20)
    assert torch.equal(fast, slow.detach())
    assert fast.min() == 0  # the ReLU ran
    slow.sum().backward()  # nothing the backward needs was overwritten
    assert layer.dcn.weight.grad.abs().sum() > 0


def test_gemm_weight_layout_keeps_values_and_outputs():
    layer = seeded_layer()
    layer.switch_to_deploy()
    x = torch.randn(1, 16, 9, 6).contiguous(memory_format=torch.channels_last)
    weight = layer.dcn.weight.detach().clone()
    with torch.no_grad():
        before = layer(x)
        layer.gemm_weight_layout()
        after = layer(x)
    stored = layer.dcn.weight
    assert isinstance(stored, torch.nn.Parameter)
    assert stored.shape == (8, 16, 3, 3)
    assert torch.equal(stored, weight)
    assert stored.permute(1, 2, 3, 0).is_contiguous()
    assert not stored.is_contiguous()
    assert torch.equal(before, after)
    assert set(layer.state_dict()) == {
        'dcn_offset.weight', 'dcn_offset.bias', 'dcn.weight', 'dcn.bias',
        'up_sample.weight', 'up_sample.bias'
    }
