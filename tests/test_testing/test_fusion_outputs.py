"""Seeded head outputs for the fusion head: the same per seed, shaped as
the head hands them over, object-like where asked."""
import torch
import torch.nn.functional as F

from rap_sam.testing.fusion_outputs import object_like_outputs, random_outputs


def test_object_like_outputs():
    cls, masks = object_like_outputs((50, 84), seed=3)
    assert cls.shape == (1, 100, 134) and masks.shape == (1, 100, 50, 84)
    again = object_like_outputs((50, 84), seed=3)
    assert torch.equal(cls, again[0]) and torch.equal(masks, again[1])
    other = object_like_outputs((50, 84), seed=4)
    assert not torch.equal(masks, other[1])
    scores, labels = F.softmax(cls[0], -1).max(-1)
    confident = (scores > 0.8) & (labels < 133)
    assert confident[:8].all() and not confident[8:].any()
    # The first two confident queries are stuff (labels 80 on), the rest
    # things.
    assert (labels[:2] >= 80).all() and (labels[2:8] < 80).all()
    area = (masks[0] > 0).float().mean((1, 2))
    assert (area[-30:] == 0).all()  # empty queries
    assert (area[:70] > 0).sum() >= 60
    # Objects are mostly small: the median one under 5 % of the image.
    assert area[8:70].median() < 0.05


def test_random_outputs():
    cls, masks = random_outputs((20, 30), num_queries=7, num_classes=5)
    assert cls.shape == (1, 7, 6) and masks.shape == (1, 7, 20, 30)
    assert 0.3 < (masks > 0).float().mean() < 0.7
