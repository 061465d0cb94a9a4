"""Prompt masks (ScoredPanopticFusionHead.binary_masks, which
RapSAM.add_prompt_preds calls) computed on each mask's window must be bit
for bit the full-size interpolations' masks."""
import pytest
import torch
import torch.nn.functional as F
from test_fusion_head_bands import CASES, edge_case_outputs, heads
from test_scored_panoptic_fusion_head import sample

from rap_sam.deploy import ReferenceFusionHead
from rap_sam.models.detectors import RapSAM


def full_size(logits, meta, rescale):
    """add_prompt_preds' calls written out: ``[1, n, h, w]`` logits to the
    padded size, cropped, to ``ori_shape``, then > 0."""
    up = F.interpolate(
        logits[None],
        size=meta['batch_input_shape'],
        mode='bilinear',
        align_corners=False)
    h, w = meta['img_shape']
    up = up[:, :, :h, :w]
    if rescale and tuple(meta['ori_shape']) != (h, w):
        up = F.interpolate(
            up, size=meta['ori_shape'], mode='bilinear', align_corners=False)
    return up[0] > 0


# Masks of edge_case_outputs taken as prompt masks, alone and together: 4
# and 5 touch the top and bottom, 6 and 7 have one logit row inside, 8 is
# empty, 9 covers most rows (the full-size calls), 10 is a line one logit
# high, 11 one positive logit, 12 and 13 touch the left and right.
PROMPTS = [[4], [5], [6], [7], [8], [10], [11], [12], [13], [4, 11], [4, 5, 6],
           [7, 12, 13, 4], [9], [9, 4]]


@pytest.mark.parametrize('threads', [1, 2])
@pytest.mark.parametrize('case', CASES)
def test_prompt_masks_equal_the_full_size_calls(case, threads):
    img_shape, ori_shape, pad, mask_hw, rescale = case
    head, _ = heads()
    _, masks = edge_case_outputs(*mask_hw)
    meta = sample(img_shape, ori_shape, pad).metainfo
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        windowed = 0
        for prompts in PROMPTS:
            logits = masks[0, prompts]
            got = head.binary_masks(logits, meta, rescale)
            want = full_size(logits, meta, rescale)
            assert got.dtype == torch.bool and got.shape == want.shape
            assert torch.equal(got, want), prompts
            windowed += head.prompt_windows(logits, meta, rescale) is not None
    finally:
        torch.set_num_threads(before)
    ratio = pad[0] / mask_hw[0]
    # Not vacuous: where windows give the same bits, most prompts take
    # them (all but three masks and the one over most rows).
    assert windowed >= (10 if ratio in (1, 2, 4, 8) else 0)


def test_prompt_masks_in_place_of_the_full_size_are_the_reference():
    """add_prompt_preds with the model's head and with mmdet's (the
    reference, full-size calls): the same masks, scores and labels."""
    ours, ref = heads()
    cls, masks = edge_case_outputs(40, 64)
    prompts = [4, 10]
    results = []
    for head in (ours, ref):
        model = RapSAM.__new__(RapSAM)
        torch.nn.Module.__init__(model)
        model.panoptic_fusion_head = head
        s = sample((150, 250), (300, 500), (160, 256))
        model.add_prompt_preds(cls[:, prompts], masks[:, prompts],
                               torch.rand(1, 2, 1), [s], True)
        results.append(s.pred_instances)
    assert isinstance(ref, ReferenceFusionHead)
    assert results[0].masks.shape == (2, 300, 500)
    assert results[0].masks.flatten(1).any(1).all()
    for key in ('masks', 'labels', 'scores'):
        assert torch.equal(results[0][key], results[1][key]), key
