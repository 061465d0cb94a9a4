"""A user's own vocabulary through the API and the image demo."""
import json
import os
import sys

import pytest
import torch
from helpers import REPO, config_path, random_class_embeddings

from rap_sam.apis import InputError, RapSAMPredictor
from rap_sam.utils.class_embeddings import class_embedding_path
from rap_sam.utils.openclip_loader import (DEFAULT_CLIP_MODEL,
                                           DEFAULT_CLIP_PRETRAINED)
from rap_sam.utils.text_classifier import vocabulary_name

COCO = config_path('rap_sam/eval_rap_sam_coco.py')

CLASSES = ['coffee cup,mug', 'saucer', 'table,desk']


@pytest.fixture
def cached_vocabulary():
    """What tools/gen_cls.py would have cached for CLASSES (no CLIP weights
    are at hand here: seeded stand-ins under the content-hashed name)."""
    name = vocabulary_name(CLASSES, DEFAULT_CLIP_MODEL,
                           DEFAULT_CLIP_PRETRAINED)
    path = class_embedding_path(name)
    torch.save(random_class_embeddings(3, num_synonyms=2, seed=7), path)
    yield path
    os.remove(path)


def test_outputs_carry_the_users_names(weights, photo, cached_vocabulary):
    predictor = RapSAMPredictor(
        COCO, weights, 'cpu', scale=(96, 64), classes=CLASSES)
    predictor.model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.0
    assert predictor.class_names == ['coffee cup', 'saucer', 'table']
    result = predictor.segment_image(photo)
    assert len(result.pred_instances) > 0
    assert set(result.pred_instances.labels.tolist()) <= {0, 1, 2}
    assert predictor.dataset_meta['thing_classes'] == predictor.class_names
    assert {s['label'] for s in result.pred_panoptic_seg.segments} <= {0, 1, 2}


def test_missing_embeddings_say_which_clip_weights(weights, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv('RAP_SAM_CLIP_DIR', str(tmp_path / 'no-clip'))
    with pytest.raises(Exception, match=DEFAULT_CLIP_PRETRAINED):
        RapSAMPredictor(COCO, weights, 'cpu', classes=['never seen'])


def test_empty_vocabulary_is_refused(weights):
    with pytest.raises(InputError, match='empty'):
        RapSAMPredictor(COCO, weights, 'cpu', classes=['  '])


def test_image_demo_with_a_class_file(weights, photo, tmp_path,
                                      cached_vocabulary):
    import cv2
    sys.path.insert(0, os.path.join(REPO, 'demo'))
    import demo
    img = tmp_path / 'photo.jpg'
    cv2.imwrite(str(img), photo)
    classes = tmp_path / 'classes.txt'
    classes.write_text('\n'.join(CLASSES) + '\n')
    demo.main([
        str(img), COCO, '--weights', weights, '--scale', '96', '64',
        '--classes',
        str(classes), '--num-things', '2', '--score-thr', '0', '--out-dir',
        str(tmp_path / 'out')
    ])
    with open(tmp_path / 'out' / 'photo.json') as f:
        segments = json.load(f)['segments']
    assert segments
    assert {s['category']
            for s in segments} <= {'coffee cup', 'saucer', 'table'}
