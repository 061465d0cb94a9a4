"""Every shipped config's model, built as the config says (on the meta
device: no weights, no memory) and run through its backbone and neck: a
setting the backbone does not take, or a neck that does not fit the
backbone's widths, fails here instead of at the start of a training run."""
import copy
import glob
import os.path as osp

import pytest
import torch
from helpers import REPO
from mmdet.registry import MODELS

import rap_sam  # noqa: F401  (registers the modules)
from rap_sam.utils.config_file import read_config

CONFIGS = {
    osp.relpath(p, REPO): read_config(p)
    for p in sorted(glob.glob(osp.join(REPO, 'configs', 'rap_sam', '*.py')))
}
MODEL_CONFIGS = [name for name, cfg in CONFIGS.items() if 'model' in cfg]


def test_every_config_with_a_model_is_checked():
    assert len(MODEL_CONFIGS) >= 10
    assert 'configs/rap_sam/rap_sam_convl_12e_adaptor.py' in MODEL_CONFIGS
    # The toy model's settings, which the toy configs merge into theirs.
    assert CONFIGS.keys() - set(MODEL_CONFIGS) == {
        'configs/rap_sam/toy_rap_sam_model.py'
    }


@pytest.mark.parametrize('config', MODEL_CONFIGS)
def test_model_builds_and_its_neck_fits_its_backbone(config):
    cfg = copy.deepcopy(CONFIGS[config])
    # Neither weights nor class embeddings are here: the structure is
    # what is checked.
    cfg.model.backbone.init_cfg = None
    cfg.model.panoptic_head.ov_classifier_name = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        with torch.no_grad():
            feats = model.backbone(torch.empty(1, 3, 64, 96))
            assert len(feats) == 4
            assert [f.shape[-1] for f in feats] == [24, 12, 6, 3]
            out = model.neck(feats)
    assert out.shape[:2] == (1, cfg.model.neck.out_channels)
    assert tuple(out.shape[-2:]) == (16, 24)  # stride 4
