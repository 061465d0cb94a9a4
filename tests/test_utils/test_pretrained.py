"""The backbone's torchvision weights fetched before training: a failed
download is one line naming the file and the folder (it was a URLError
traceback from inside the runner), a cached file is used as it is."""
import os

import pytest
from helpers import config_path, load_tool
from mmengine.config import Config
from mmengine.runner import checkpoint as mmengine_checkpoint

from rap_sam.utils.pretrained import PretrainedWeightsError, fetch_pretrained

# Nothing listens on the discard port: a download fails at once, as on a
# machine without internet.
UNREACHABLE = 'http://127.0.0.1:9/models/resnet50-0676ba61.pth'


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models',
                        lambda: {'resnet50': UNREACHABLE})
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def _cfg(init_cfg):
    return Config(dict(model=dict(backbone=dict(init_cfg=init_cfg))))


PRETRAINED = dict(type='Pretrained', checkpoint='torchvision://resnet50')


def test_a_failed_download_is_one_line(offline):
    with pytest.raises(PretrainedWeightsError) as err:
        fetch_pretrained(_cfg(PRETRAINED))
    message = str(err.value)
    assert message.startswith(
        "Cannot download the backbone's ImageNet weights "
        f'torchvision://resnet50 ({UNREACHABLE}: ')
    assert message.endswith(
        f'put resnet50-0676ba61.pth in {offline} (the file at that address), '
        'or train from scratch with --cfg-options '
        'model.backbone.init_cfg=None.')
    assert '\n' not in message
    assert os.listdir(offline) == []  # no partial file left


def test_a_cached_file_is_used(offline):
    offline.mkdir(parents=True)
    (offline / 'resnet50-0676ba61.pth').write_bytes(b'weights')
    assert fetch_pretrained(_cfg(PRETRAINED)) == str(offline /
                                                     'resnet50-0676ba61.pth')


@pytest.mark.parametrize('init_cfg', [
    None,
    dict(type='Pretrained', checkpoint='/weights/r50.pth'),
    dict(type='clip_pretrain', checkpoint='laion2b_s29b_b131k_ft_soup'),
])
def test_other_inits_are_left_to_their_loaders(offline, init_cfg):
    assert fetch_pretrained(_cfg(init_cfg)) is None


def test_a_later_process_of_a_node_leaves_it_to_the_first(
        offline, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '1')
    assert fetch_pretrained(_cfg(PRETRAINED)) is None


def test_a_name_torchvision_lacks(offline):
    with pytest.raises(
            PretrainedWeightsError,
            match='torchvision has no '
            'weights for: name one it has'):
        fetch_pretrained(
            _cfg(dict(type='Pretrained', checkpoint='torchvision://resnet5')))


def test_train_tool_says_it_before_the_runner(offline, tmp_path, capsys):
    """The R50 recipe as docs/training.md starts it, without internet."""
    train = load_tool('tools/train.py')
    with pytest.raises(SystemExit) as end:
        train.main([
            config_path('rap_sam/rap_sam_r50_12e_adaptor.py'), '--work-dir',
            str(tmp_path / 'work')
        ])
    assert end.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot download the backbone's ImageNet "
                          'weights torchvision://resnet50')
    assert err.count('\n') == 1


def test_a_resumed_checkpoint_needs_no_imagenet_weights(tmp_path):
    train = load_tool('tools/train.py')
    ckpt = tmp_path / 'epoch_1.pth'
    args = train.parse_args([
        config_path('rap_sam/rap_sam_r50_12e_adaptor.py'), '--resume',
        str(ckpt)
    ])
    import torch
    torch.save({'state_dict': {}, 'meta': {}}, ckpt)
    cfg = train.build_cfg(args)
    assert cfg.model.backbone.init_cfg is None
    auto = train.build_cfg(
        train.parse_args(
            [config_path('rap_sam/rap_sam_r50_12e_adaptor.py'), '--resume']))
    # --resume alone may find nothing to resume and start afresh.
    assert auto.model.backbone.init_cfg == PRETRAINED


def test_a_resumed_convnext_training_needs_no_clip_weights(
        tmp_path, monkeypatch):
    """The frozen CLIP tower is in the checkpoint: resuming reads no CLIP
    file (it needed one, as a fresh start does, which it still does)."""
    import torch
    from mmdet.registry import MODELS

    import rap_sam  # noqa: F401  (registers the modules)
    from rap_sam.utils.openclip_loader import (ClipWeightsNotFoundError,
                                               resolve_clip_checkpoint)
    monkeypatch.setenv('RAP_SAM_CLIP_DIR', str(tmp_path / 'clip'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf'))
    train = load_tool('tools/train.py')
    config = config_path('rap_sam/rap_sam_convl_12e_adaptor.py')
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {}, 'meta': {}}, ckpt)
    resumed = train.build_cfg(
        train.parse_args([config, '--resume', str(ckpt)]))
    fresh = train.build_cfg(train.parse_args([config]))
    with torch.device('meta'):
        resumed = MODELS.build(resumed.model.backbone)
        fresh = MODELS.build(fresh.model.backbone)
    # What init_weights reads: nothing, and the tag's file (not here).
    assert resumed.pretrained is None and resumed.checkpoint is None
    assert resolve_clip_checkpoint(resumed.model_name, None, None) is None
    assert fresh.pretrained == 'laion2b_s29b_b131k_ft_soup'
    with pytest.raises(
            ClipWeightsNotFoundError, match='laion2b_s29b_b131k_ft_soup'):
        fresh.init_weights()
