"""Shared builders for the tests."""
import os.path as osp

import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import rap_sam  # noqa: F401  (registers modules)
# The tests' weights and batches, shared with the benchmark.
from rap_sam.testing import image_batch, randomize_, video_batch  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# A tiny OpenCLIP architecture (timm ConvNeXt-atto image tower, 2-layer text
# tower) for tests that need CLIP without its weights.
TINY_CLIP_CFG = dict(
    embed_dim=32,
    vision_cfg=dict(
        timm_model_name='convnext_atto',
        timm_pool='',
        timm_proj='mlp',
        image_size=64),
    text_cfg=dict(
        context_length=77, vocab_size=49408, width=64, heads=2, layers=2))


def random_class_embeddings(num_classes, num_synonyms=3, dim=768, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(num_classes, num_synonyms, dim, generator=g)
    return emb / emb.norm(dim=-1, keepdim=True)


def config_path(name: str) -> str:
    return osp.join(REPO, 'configs', name)


def load_config(name: str) -> Config:
    cfg = Config.fromfile(config_path(name))
    # No pretrained ResNet download: weights are seeded or loaded.
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(name: str = 'rap_sam/eval_rap_sam_coco.py', seed: int = 0):
    cfg = load_config(name)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    randomize_(model, seed)
    return model.eval()


def random_image(h, w, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------
# deformable convolutions (tests/test_ops)
# ----------------------------------------------------------------------
def assert_rel_close(actual, expected, rel=1e-5):
    """Max error within ``rel`` of the expected tensor's largest value."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp(min=1e-6)
    err = (actual - expected).abs().max()
    assert err <= rel * scale, f'max error {err:.3g}, scale {scale:.3g}'


def seeded_deform_conv(cin, cout, k, stride, padding, dilation, groups, dg,
                       bias, seed):
    """mmcv's ModulatedDeformConv2d (the reference kernel) with seeded
    N(0, 1) weights."""
    from mmcv.ops import ModulatedDeformConv2d
    torch.manual_seed(seed)
    conv = ModulatedDeformConv2d(
        cin,
        cout,
        k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        deform_groups=dg,
        bias=bias)
    with torch.no_grad():
        conv.weight.normal_()
        if bias:
            conv.bias.normal_()
    return conv


def conv_out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1
