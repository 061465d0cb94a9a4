"""Swapping in a user's vocabulary."""
import pytest
import torch
from helpers import (build_model, image_batch, random_class_embeddings,
                     random_image)

from rap_sam.models.utils import set_vocabulary


def test_outputs_follow_the_new_vocabulary():
    model = build_model('rap_sam/eval_rap_sam_coco.py', seed=4)
    model.panoptic_fusion_head.test_cfg['object_mask_thr'] = 0.0
    vocab = random_class_embeddings(3, num_synonyms=2, seed=9)
    set_vocabulary(model, vocab, num_things=2)
    data = model.data_preprocessor(image_batch([random_image(64, 96)]))
    with torch.no_grad():
        cls = model(data['inputs'], data['data_samples'], mode='tensor')[0]
        out = model.test_step(image_batch([random_image(64, 96)]))[0]
    assert all(c.shape[-1] == 4 for c in cls)  # 3 classes + background
    labels = out.pred_instances.labels
    assert len(labels) > 0 and bool((labels < 2).all())
    segment_labels = {s['label'] for s in out.pred_panoptic_seg.segments}
    assert segment_labels and segment_labels <= {0, 1, 2}


def test_rejects_embeddings_of_the_wrong_width():
    model = build_model('rap_sam/eval_rap_sam_coco.py')
    with pytest.raises(ValueError, match='768'):
        set_vocabulary(model, random_class_embeddings(3, dim=512), 1)
    with pytest.raises(ValueError, match='num_things'):
        set_vocabulary(model, random_class_embeddings(3), 5)
