"""The merged-group constructor gives every parameter the settings
mmengine's default constructor gives it, in a few groups."""
import torch
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor

from rap_sam.engine import MergedParamGroupsConstructor


class Tiny(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))
        self.kernels = nn.Embedding(5, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)


def _build(constructor, model):
    """The recipe's kind of settings (backbone lr x0.1, no decay on norms
    and embeddings) through ``constructor``."""
    paramwise_cfg = dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'kernels': dict(lr_mult=1.0, decay_mult=0.0),
        },
        norm_decay_mult=0.0)
    return constructor(
        dict(optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05)),
        paramwise_cfg)(
            model)


def _settings(optimizer):
    """Parameter -> (lr, weight decay) as the optimiser will apply them."""
    return {
        id(p): (g['lr'], g['weight_decay'])
        for g in optimizer.param_groups
        for p in g['params']
    }


def test_same_settings_in_fewer_groups():
    model = Tiny()
    default = _build(DefaultOptimWrapperConstructor, model).optimizer
    merged = _build(MergedParamGroupsConstructor, model).optimizer
    assert len(default.param_groups) == len(list(model.parameters())) == 11
    # backbone convs (lr 1e-5, decay), backbone BN (1e-5, none),
    # embedding + norm + biases (1e-4, none), head weight (1e-4, decay)
    assert len(merged.param_groups) == 4
    assert _settings(merged) == _settings(default)
    params = [p for g in merged.param_groups for p in g['params']]
    assert len(params) == len({id(p) for p in params}) == 11
    # the first group is the first parameter's (the lr the logger shows)
    assert merged.param_groups[0]['params'][0] is model.backbone[0].weight
    assert merged.param_groups[0]['lr'] == default.param_groups[0]['lr']


def test_one_step_equals_the_default_constructors():
    torch.manual_seed(0)
    model = Tiny()
    twin = Tiny()
    twin.load_state_dict(model.state_dict())
    steps = [
        _build(MergedParamGroupsConstructor, model),
        _build(DefaultOptimWrapperConstructor, twin)
    ]
    x = torch.randn(2, 3, 6, 6)
    for m, wrapper in zip((model, twin), steps):
        feats = m.backbone(x).mean((2, 3))
        loss = m.head(m.norm(feats + m.kernels.weight[:1])).square().sum()
        wrapper.update_params(loss)
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
