"""The model's state dict is the released checkpoint's, key for key."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from helpers import REPO, build_model
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import load_checkpoint, save_checkpoint

# The released rapsam_r50_12e.pth, key by key: 568 entries and their shapes.
SHAPES = osp.join(REPO, 'tests', 'data', 'rapsam_r50_state_dict_shapes.json')
EVAL_CONFIGS = [
    'rap_sam/eval_rap_sam_coco.py', 'rap_sam/eval_rap_sam_yt19.py',
    'rap_sam/eval_rap_sam_prompt.py'
]


def released_shapes():
    if not osp.isfile(SHAPES):
        pytest.fail(f'{SHAPES} is missing: the contract cannot be checked')
    with open(SHAPES) as f:
        return json.load(f)


@pytest.mark.parametrize('config', EVAL_CONFIGS)
def test_keys_and_shapes_match_release(config):
    expected = released_shapes()
    state = build_model(config).state_dict()
    assert sorted(set(state) ^ set(expected)) == []
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert len(state) == 568
    numel = sum(v.numel() for k, v in state.items()
                if not k.endswith('num_batches_tracked'))
    # 47.3M parameters and buffers, as published (BN counters aside).
    assert numel == 47308949


def mmengine_style_checkpoint(model):
    """What mmengine's CheckpointHook writes: meta with numpy values and a
    message hub full of HistoryBuffers."""
    hub = MessageHub.get_instance('rap_sam_test')
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_scalar('train/lr', 1e-4)
    hub.update_info('iter', 7)
    return {
        'meta': {
            'epoch': 12,
            'iter': 7,
            'seed': np.int64(42),
            'cfg': 'model = dict(type="RapSAM")',
            'dataset_meta': {
                'classes': ('person', 'sky')
            },
            'hist': np.arange(4, dtype=np.float32),
            'buffer': HistoryBuffer([1.0, 2.0], [1, 1]),
        },
        'state_dict': model.state_dict(),
        'message_hub': hub.state_dict(),
    }


@pytest.mark.parametrize('keep_metadata', [True, False])
def test_strict_load_of_mmengine_checkpoint(tmp_path, keep_metadata):
    source = build_model(seed=1)
    target = build_model(seed=2)
    ckpt = mmengine_style_checkpoint(source)
    if not keep_metadata:
        ckpt['state_dict'] = dict(ckpt['state_dict'])
        assert not hasattr(ckpt['state_dict'], '_metadata')
    path = str(tmp_path / 'rapsam.pth')
    save_checkpoint(ckpt, path)

    loaded = load_checkpoint(target, path, map_location='cpu', strict=True)
    assert loaded['meta']['buffer'].mean() == 1.5
    for (name, a), b in zip(source.state_dict().items(),
                            target.state_dict().values()):
        assert torch.equal(a, b), name


def test_plain_state_dict_file_loads(tmp_path):
    """A bare state dict (as people share weights) with a *cls* key."""
    source = build_model(seed=3)
    target = build_model(seed=4)
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(source.state_dict()), path)
    load_checkpoint(target, path, strict=True)
    assert torch.equal(target.panoptic_head.panoptic_cls[0].weight,
                       source.panoptic_head.panoptic_cls[0].weight)
