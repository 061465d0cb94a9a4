"""mmdet's own inference doors on RAP-SAM configs: ``DetInferencer`` and
``init_detector`` + ``inference_detector``, with checkpoints that carry a
``dataset_meta`` and checkpoints that do not (the released one)."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, build_model, config_path
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmdet.datasets import CocoPanopticDataset
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from panopticapi.evaluation import VOID
from panopticapi.utils import rgb2id

from rap_sam.datasets import CocoPanopticOVDataset, display_names

COCO = config_path('rap_sam/eval_rap_sam_coco.py')
NUM_CLASSES = 133


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Seeded weights, saved without and with a dataset_meta (the one a
    Runner saves: the dataset's metainfo)."""
    root = tmp_path_factory.mktemp('ckpt')
    state = build_model().state_dict()
    bare, meta = str(root / 'bare.pth'), str(root / 'meta.pth')
    torch.save(dict(state_dict=state), bare)
    save_checkpoint(
        dict(
            state_dict=state,
            meta=dict(dataset_meta=dict(CocoPanopticOVDataset.METAINFO))),
        meta)
    return dict(bare=bare, meta=meta)


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    img = cv2.resize(
        cv2.imread(osp.join(REPO, 'demo', 'demo.jpg')), (128, 96),
        interpolation=cv2.INTER_AREA)
    path = str(tmp_path_factory.mktemp('img') / 'photo.jpg')
    cv2.imwrite(path, img)
    return path


def small_config():
    """The shipped config at 128 x 96; random weights are never 0.8 sure of
    a segment, at 0.05 there are segments to draw."""
    cfg = Config.fromfile(COCO)
    cfg.test_dataloader.dataset.pipeline[1].scale = (128, 96)
    cfg.model.test_cfg.object_mask_thr = 0.05
    return cfg


@pytest.mark.parametrize('kind', ['bare', 'meta'])
def test_det_inferencer_draws_and_saves(kind, checkpoints, photo, tmp_path):
    inferencer = DetInferencer(
        model=small_config(), weights=checkpoints[kind], device='cpu')
    meta = inferencer.model.dataset_meta
    assert len(meta['classes']) == NUM_CLASSES
    assert list(meta['palette']) == list(
        CocoPanopticDataset.METAINFO['palette'])
    if kind == 'bare':
        assert meta['classes'][:2] == ['person', 'bicycle']
    out = tmp_path / 'out'
    inferencer(photo, out_dir=str(out), no_save_pred=False)

    # The drawing: the photo changed where the segments are.
    img = cv2.imread(photo)
    drawn = cv2.imread(str(out / 'vis' / 'photo.jpg'))
    assert drawn.shape == img.shape
    expected = inference_detector(inferencer.model, photo)
    pan = expected.pred_panoptic_seg.sem_seg[0].numpy()
    segments = (pan % 1000) != NUM_CLASSES
    assert segments.sum() > 100
    diff = np.abs(drawn.astype(int) - img).max(-1)
    assert (diff[segments] > 30).mean() > 0.5

    # The predictions: what the model's own predict gives.
    with open(out / 'preds' / 'photo.json') as f:
        preds = json.load(f)
    inst = expected.pred_instances
    assert preds['labels'] == inst.labels.tolist()
    np.testing.assert_allclose(preds['scores'], inst.scores.numpy(), 1e-6)
    saved = rgb2id(cv2.imread(preds['panoptic_seg_path'])[..., ::-1])
    assert np.array_equal(saved[segments], pan[segments])
    # Void (and only void) is written as panopticapi's VOID.
    assert (saved[~segments] == VOID).all()


def test_det_inferencer_nothing_to_draw(checkpoints, photo, tmp_path):
    """No segment above the threshold: the photo as it is (mmdet's
    DetLocalVisualizer fails on an empty panoptic map; the configs' subclass
    does not)."""
    cfg = small_config()
    cfg.model.test_cfg.object_mask_thr = 1.0
    cfg.model.test_cfg.instance_on = False
    inferencer = DetInferencer(
        model=cfg, weights=checkpoints['bare'], device='cpu')
    inferencer(photo, out_dir=str(tmp_path), no_save_pred=False)
    drawn = cv2.imread(str(tmp_path / 'vis' / 'photo.jpg'))
    img = cv2.imread(photo)
    # JPEG written twice: equal up to compression.
    assert np.abs(drawn.astype(int) - img).mean() < 3


def test_init_detector_and_inference_detector(checkpoints, photo):
    results = {}
    for kind, ckpt in checkpoints.items():
        model = init_detector(small_config(), ckpt, device='cpu')
        names = model.dataset_meta['classes']
        assert len(names) == NUM_CLASSES
        assert display_names(names)[0] == 'person'
        results[kind] = inference_detector(model, photo)
    bare, meta = results['bare'], results['meta']
    assert bare.pred_panoptic_seg.sem_seg.shape == (1, 96, 128)
    assert torch.equal(bare.pred_panoptic_seg.sem_seg,
                       meta.pred_panoptic_seg.sem_seg)
    assert torch.equal(bare.pred_instances.labels, meta.pred_instances.labels)
