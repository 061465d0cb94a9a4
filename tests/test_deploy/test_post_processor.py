"""RapSAMPostProcessor: the torch post-processing of a runtime backend's
outputs, whatever default scope the caller's other libraries set."""
import torch
from mmengine.registry import DefaultScope

from rap_sam.deploy.backends.post_processor import RapSAMPostProcessor
from rap_sam.models.seg_heads import ScoredPanopticFusionHead
from rap_sam.testing.fusion_outputs import fusion_sample, object_like_outputs


def panoptic(post, cls, masks, size):
    result = post.panoptic(cls, masks, [fusion_sample(size)])[0]
    return result.pred_panoptic_seg.sem_seg, result.pred_instances


def test_built_and_equal_under_mmengines_default_scope():
    """An mmengine Runner built from a config without ``default_scope``
    leaves 'mmengine' as the default scope, where mmdet's registry names
    are unknown: the post-processor is built there all the same and gives
    the same results."""
    size = (64, 96)
    cls, masks = object_like_outputs((16, 24),
                                     num_things_classes=3,
                                     num_stuff_classes=2,
                                     num_queries=8,
                                     num_confident=3,
                                     num_empty=2,
                                     seed=0)
    test_cfg = dict(panoptic_on=True, instance_on=True, max_per_image=10)
    want_map, want_ins = panoptic(
        RapSAMPostProcessor(3, 2, test_cfg), cls, masks, size)
    with DefaultScope.overwrite_default_scope('mmengine'):
        post = RapSAMPostProcessor(3, 2, test_cfg)
        got_map, got_ins = panoptic(post, cls, masks, size)
    assert isinstance(post.panoptic_fusion_head, ScoredPanopticFusionHead)
    assert post.panoptic_fusion_head.test_cfg == test_cfg
    assert len(want_ins) > 0 and want_map.shape == (1, ) + size
    assert torch.equal(got_map, want_map)
    assert torch.equal(got_ins.masks, want_ins.masks)
    assert torch.equal(got_ins.labels, want_ins.labels)
