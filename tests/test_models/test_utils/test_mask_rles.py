"""COCO RLEs made from run boundaries (the layout for masks on a GPU) are
pycocotools' own, byte for byte."""
import pycocotools.mask as mask_util
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures.mask import encode_mask_results

from rap_sam.models.utils import encode_mask_rles


def blobs(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = F.interpolate(
        torch.randn(n, 1, max(h // 8, 1), max(w // 8, 1), generator=g),
        size=(h, w),
        mode='bilinear',
        align_corners=False)[:, 0]
    return logits > 0.5


def edge_cases(h, w):
    masks = torch.zeros(6, h, w, dtype=torch.bool)
    masks[1] = True  # one run of ones: the counts start with an empty run
    masks[2, 0, 0] = True  # the first pixel only
    masks[3, -1, -1] = True  # the last pixel only
    masks[4, :, 0] = True  # the first column: one run in COCO's order
    masks[5, 0, :] = True  # the first row: one pixel per column
    return masks


@pytest.mark.parametrize('h, w', [(37, 53), (1, 9), (9, 1), (64, 48)])
def test_boundaries_give_pycocotools_rles(h, w):
    masks = torch.cat([edge_cases(h, w), blobs(5, h, w, seed=h * w)])
    want = encode_mask_results(masks.numpy())
    got = encode_mask_rles(masks, on_device=True)
    assert got == want
    assert all(isinstance(rle['counts'], bytes) for rle in got)
    assert torch.equal(
        torch.from_numpy(mask_util.decode(got)).permute(2, 0, 1).bool(), masks)
    # The default on the CPU is pycocotools' encoder itself.
    assert encode_mask_rles(masks) == want


def test_no_masks():
    assert encode_mask_rles(
        torch.zeros(0, 5, 7, dtype=torch.bool), on_device=True) == []
