import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ..skipped_samples import skip_sample
from .prompts import click_box


@TRANSFORMS.register_module()
class GenerateTrainPrompts(BaseTransform):
    """Random prompts for interactive training, after the crop.

    ``num_prompts`` prompts per image (every image of a batch must give the
    same count), spread evenly over its segments: each segment in turn, in a
    random order, until there are enough. A prompt is a click at a random
    pixel of its segment, fed as the 6-px box around it; with probability
    ``box_prob`` a thing's prompt is its bounding box instead. Each prompt is
    supervised by the segment that contains it (``prompt_indices`` into
    ``gt_masks``).

    Segments under ``min_area`` pixels get no prompt (a click on a speck
    teaches little and its box is degenerate); ``num_tiny_segments`` counts
    them. An image with no segment left is rejected (the dataset draws
    another).

    Args:
        num_prompts: prompts per image.
        box_prob: chance that a thing's prompt is its box.
        num_thing_classes: labels below this are things.
        min_area: smallest segment (pixels) that gets prompts.
    """

    def __init__(self,
                 num_prompts: int = 30,
                 box_prob: float = 0.5,
                 num_thing_classes: int = 80,
                 min_area: int = 32) -> None:
        self.num_prompts = num_prompts
        self.box_prob = box_prob
        self.num_thing_classes = num_thing_classes
        self.min_area = min_area

    def transform(self, results: dict):
        masks = results['gt_masks'].masks
        areas = masks.reshape(len(masks), -1).sum(1)
        usable = np.flatnonzero(areas >= self.min_area)
        results['num_tiny_segments'] = int((areas < self.min_area).sum())
        if len(usable) == 0:
            return skip_sample(
                f'no segment of >= {self.min_area} px to prompt in '
                f"'{results.get('img_path')}'")
        rounds = -(-self.num_prompts // len(usable))
        order = np.concatenate(
            [np.random.permutation(usable) for _ in range(rounds)])
        indices = order[:self.num_prompts]

        boxes = results['gt_bboxes'].numpy()
        is_thing = results['gt_bboxes_labels'] < self.num_thing_classes
        as_box = is_thing[indices] & (
            np.random.rand(len(indices)) < self.box_prob)
        prompts = np.zeros((len(indices), 4), dtype=np.float32)
        pixels = {}
        for k, (i, box) in enumerate(zip(indices, as_box)):
            if box:
                prompts[k] = boxes[i]
                continue
            if i not in pixels:
                pixels[i] = np.flatnonzero(masks[i])
            y, x = np.divmod(np.random.choice(pixels[i]), masks.shape[2])
            prompts[k] = click_box(x, y)
        results['prompt_boxes'] = prompts
        results['prompt_indices'] = indices.astype(np.int64)
        results['prompt_is_box'] = as_box
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_prompts={self.num_prompts}, '
                f'box_prob={self.box_prob}, min_area={self.min_area})')
