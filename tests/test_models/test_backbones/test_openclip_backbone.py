"""OpenCLIPBackbone on tiny random OpenCLIP towers (no downloads)."""
import pytest
import torch
from helpers import TINY_CLIP_CFG as TINY
from mmdet.registry import MODELS

import rap_sam.models.backbones.openclip_backbone  # noqa: F401 (registers)
from rap_sam.utils.openclip_loader import (ClipCheckpointError,
                                           ClipWeightsNotFoundError,
                                           build_clip_model)


def _build(**kwargs):
    cfg = dict(
        type='mmdet.OpenCLIPBackbone',  # whatever the current scope
        model_name='tiny_clip',
        model_cfg=TINY,
        pretrained=None)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_shapes_and_strides():
    backbone = _build()
    assert backbone.out_channels == [40, 80, 160, 320]
    assert backbone.strides == [4, 8, 16, 32] and backbone.embed_dim == 32
    feats = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats
            ] == [(2, c, 64 // s, 96 // s)
                  for c, s in zip([40, 80, 160, 320], [4, 8, 16, 32])]
    assert tuple(
        _build(out_indices=(1, 3))(torch.randn(1, 3, 64,
                                               64))[1].shape) == (1, 320, 2, 2)
    clip_feat = backbone.get_clip_feature(feats[-1])
    assert clip_feat.shape == feats[-1].shape
    assert backbone.forward_feat(torch.randn(2, 5, 320)).shape == (2, 5, 32)


def test_frozen():
    backbone = _build()
    backbone.train()
    assert not backbone.training
    assert not any(m.training for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    assert not any(f.requires_grad for f in backbone(x))

    trainable = _build(fix=False)
    trainable.train()
    assert trainable.training
    assert all(p.requires_grad for p in trainable.layer4.parameters())
    assert not any(p.requires_grad for p in trainable.head.parameters())
    assert trainable(x)[-1].requires_grad


def test_init_weights_from_local_checkpoint(tmp_path):
    torch.manual_seed(1)
    clip = build_clip_model('tiny_clip', TINY)
    path = tmp_path / 'clip.pth'
    torch.save(clip.state_dict(), path)
    backbone = _build(checkpoint=str(path))
    backbone.init_weights()
    trunk = clip.visual.trunk
    assert torch.equal(backbone.stem[0].weight, trunk.stem[0].weight)
    assert torch.equal(backbone.layer3.blocks[0].conv_dw.weight,
                       trunk.stages[2].blocks[0].conv_dw.weight)
    x = torch.randn(1, 3, 64, 64)
    expected = trunk.stages(trunk.stem(x))
    torch.testing.assert_close(backbone(x)[-1], expected)

    other = dict(
        TINY,
        vision_cfg=dict(TINY['vision_cfg'], timm_model_name='convnext_femto'))
    torch.save(build_clip_model('femto', other).state_dict(), path)
    with pytest.raises(
            ValueError,
            match=r'stem.0.weight is \(48, 3, 4, 4\) '
            r'there and \(40, 3, 4, 4\) here'):
        _build(checkpoint=str(path)).init_weights()


def test_no_weights_are_read_unless_named(tmp_path, monkeypatch):
    """As mmdet's backbones without an init_cfg: random weights, no file
    looked for (a RAP-SAM checkpoint holds the tower)."""
    monkeypatch.setenv('RAP_SAM_CLIP_DIR', str(tmp_path / 'clip'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    backbone = MODELS.build(
        dict(
            type='mmdet.OpenCLIPBackbone',
            model_name='tiny_clip',
            model_cfg=TINY))
    assert backbone.pretrained is None and backbone.checkpoint is None
    backbone.init_weights()
    assert backbone(torch.randn(1, 3, 64, 64))[-1].shape == (1, 320, 2, 2)
    assert not (tmp_path / 'clip').exists()


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv('RAP_SAM_CLIP_DIR', str(tmp_path / 'clip'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    backbone = _build(
        model_name='convnext_large_d_320',
        init_cfg=dict(
            type='clip_pretrain', checkpoint='laion2b_s29b_b131k_ft_soup'))
    with pytest.raises(
            ClipWeightsNotFoundError,
            match='laion2b_s29b_b131k_ft_soup') as exc:
        backbone.init_weights()
    assert 'open_clip_pytorch_model.bin' in str(exc.value)


def test_config_errors():
    with pytest.raises(ValueError, match='out_indices'):
        _build(out_indices=(0, 4))
    with pytest.raises(ValueError, match='no model named'):
        _build(model_name='convnext_nonexistent', model_cfg=None)
    vit = dict(
        embed_dim=16,
        vision_cfg=dict(
            image_size=32, patch_size=16, width=32, layers=1, head_width=16),
        text_cfg=dict(width=32, heads=2, layers=1))
    with pytest.raises(ValueError, match='ConvNeXt'):
        _build(model_cfg=vit)


def test_damaged_checkpoint_is_one_line(tmp_path):
    """A cut file (a download that stopped) is the loader's one line, not
    torch's traceback; a file of another model says what to pass."""
    torch.manual_seed(1)
    path = tmp_path / 'clip.pth'
    torch.save(build_clip_model('tiny_clip', TINY).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(
            ClipCheckpointError,
            match='truncated or damaged checkpoint') as exc:
        _build(checkpoint=str(path)).init_weights()
    assert '\n' not in str(exc.value)
    torch.save({'visual.proj': torch.zeros(3)}, path)
    with pytest.raises(
            ClipCheckpointError,
            match='lacks .* image-tower weights .*; pass'):
        _build(checkpoint=str(path)).init_weights()
