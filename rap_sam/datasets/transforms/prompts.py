"""The COCO-SAM prompts: one click (or box) per panoptic segment."""
import logging
from typing import Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log
from scipy.ndimage import distance_transform_edt

CLICK_HALF_SIZE = 3  # a click at (x, y) is fed as (x-3, y-3, x+3, y+3)


def farthest_point(mask: np.ndarray) -> Tuple[int, int]:
    """``(x, y)`` of the mask pixel farthest from the mask's border.

    The border is the background around the mask with the image edge counted
    as background (the mask is padded by one background pixel); the distance
    is Euclidean; ties go to the first pixel in row-major order. The
    transform runs on the mask's bounding box plus that one-pixel ring, which
    gives the same distances as the whole image (the ring is background and
    nearer than anything beyond it) at a fraction of the cost.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        raise ValueError('farthest_point needs a non-empty mask.')
    crop = np.pad(mask[y0:y0 + h, x0:x0 + w], 1)
    dist = distance_transform_edt(crop)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return x0 + int(col), y0 + int(row)


def click_box(x: float, y: float) -> np.ndarray:
    r = CLICK_HALF_SIZE
    return np.array([x - r, y - r, x + r, y + r], dtype=np.float32)


@TRANSFORMS.register_module()
class GenerateSegmentPrompts(BaseTransform):
    """One prompt per segment, from the resized masks.

    Runs after ``LoadPanopticSegments`` and ``Resize``. Each segment gets a
    click at :func:`farthest_point` of its resized mask, as the 6-px box
    around it; with ``thing_prompt='box'`` things get their resized bounding
    box instead (stuff always gets a click); with ``'both'`` every thing gets
    a click and, as a separate prompt, its box, so one run reports click and
    box mIoU side by side (prompts never see each other in the model).
    Coordinates are in ``img_shape`` (resized, unpadded) pixels. A segment
    whose resized mask is empty gets no prompt; ``num_skipped_prompts``
    counts those.

    Added keys (N prompts, in segment order): ``prompt_boxes`` float32
    [N, 4] x1y1x2y2, ``prompt_is_box``, ``prompt_is_thing``,
    ``prompt_labels``, ``prompt_segment_ids``, ``prompt_masks_rle`` (the
    original-resolution RLEs) and ``num_skipped_prompts``.
    """

    def __init__(self, thing_prompt: str = 'click') -> None:
        if thing_prompt not in ('click', 'box', 'both'):
            raise ValueError("thing_prompt must be 'click', 'box' or 'both', "
                             f'got {thing_prompt!r}')
        self.thing_prompt = thing_prompt

    def transform(self, results: dict) -> dict:
        masks = results['gt_masks'].masks
        h, w = results['img_shape']
        boxes = results['gt_bboxes'].numpy()
        is_thing = np.asarray(results['gt_is_thing'], dtype=bool)
        prompts, keep, use_box = [], [], []
        for i in range(len(masks)):
            mask = masks[i][:h, :w]
            if not mask.any():
                continue
            thing = bool(is_thing[i])
            if not thing or self.thing_prompt != 'box':
                prompts.append(click_box(*farthest_point(mask)))
                keep.append(i)
                use_box.append(False)
            if thing and self.thing_prompt != 'click':
                prompts.append(boxes[i].astype(np.float32))
                keep.append(i)
                use_box.append(True)
        skipped = len(masks) - len(set(keep))
        if skipped:
            print_log(
                f"{skipped} segment(s) of '{results.get('img_path')}' vanish "
                f'when resized to {w}x{h} and get no prompt.',
                logger='current',
                level=logging.WARNING)
        results['prompt_boxes'] = np.array(prompts, np.float32).reshape(-1, 4)
        results['prompt_is_box'] = np.array(use_box, dtype=bool)
        results['prompt_is_thing'] = is_thing[keep]
        results['prompt_labels'] = results['gt_bboxes_labels'][keep]
        results['prompt_segment_ids'] = results['gt_segment_ids'][keep]
        results['prompt_masks_rle'] = [
            results['gt_masks_rle'][i] for i in keep
        ]
        results['num_skipped_prompts'] = skipped
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(thing_prompt={self.thing_prompt!r})'
