import os.path as osp

import cv2
import pytest
import torch
from helpers import REPO, build_model, config_path

from rap_sam.apis import RapSAMPredictor

COCO = config_path('rap_sam/eval_rap_sam_coco.py')
YT19 = config_path('rap_sam/eval_rap_sam_yt19.py')


@pytest.fixture(scope='session')
def weights(tmp_path_factory):
    """Seeded random weights as a checkpoint file; both configs load it
    (they differ only in the class embeddings, which are not saved)."""
    path = tmp_path_factory.mktemp('ckpt') / 'seeded.pth'
    torch.save({'state_dict': build_model().state_dict()}, path)
    return str(path)


@pytest.fixture(scope='session')
def predictor(weights):
    predictor = RapSAMPredictor(COCO, weights, 'cpu', scale=(96, 64))
    # Random weights are never 0.8 sure of a class; at 0.5 the photo gets
    # panoptic segments to compare.
    predictor.model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.5
    return predictor


@pytest.fixture(scope='session')
def video_predictor(weights):
    return RapSAMPredictor(YT19, weights, 'cpu', scale=(64, 48))


@pytest.fixture(scope='session')
def photo():
    """demo.jpg (a real photo) at 150 x 100, so that the predictor's resize
    to 96 x 64 changes the coordinates."""
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    return cv2.resize(img, (150, 100), interpolation=cv2.INTER_AREA)
