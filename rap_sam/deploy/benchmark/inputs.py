"""The benchmark's inputs: an image (demo/demo.jpg resized, or seeded noise),
its batches for each task, and clicks."""
import copy
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from rap_sam.testing.data_batches import image_batch, video_batch

DEMO_IMAGE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))),
    'demo', 'demo.jpg')


def load_image(shape: Tuple[int, int],
               path: Optional[str] = None,
               seed: int = 0) -> np.ndarray:
    """A BGR uint8 image of ``shape`` (h, w): ``path`` (default: the
    repository's demo/demo.jpg) resized, or seeded noise where no path is
    given and demo.jpg is missing.

    Raises:
        InputError: ``path`` given but not a readable image (the timing
            and accuracy depend on the content: never noise instead).
    """
    import cv2
    h, w = shape
    if path is None:
        img = cv2.imread(DEMO_IMAGE) if osp.isfile(DEMO_IMAGE) else None
        if img is None:
            rng = np.random.default_rng(seed)
            return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        from rap_sam.apis.inputs import read_image
        img = read_image(path)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def image_data(img: np.ndarray, prompts: Optional[torch.Tensor] = None):
    """One image's ``test_step`` batch, with ``prompts`` (boxes) if given."""
    return image_batch([img], None if prompts is None else [prompts])


def video_data(img: np.ndarray, num_frames: int):
    """A clip of ``num_frames`` frames, ``img`` shifted 8 px further right
    in each (so the frames differ)."""
    return video_batch(
        np.stack([np.roll(img, 8 * t, axis=1) for t in range(num_frames)]))


def click_boxes(h: int, w: int, num: int) -> torch.Tensor:
    """``num`` clicks spread over the image, as 6-px boxes."""
    from rap_sam.models.utils import clicks_to_boxes
    g = torch.Generator().manual_seed(num)
    clicks = torch.rand(
        num, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8]) + torch.tensor(
            [w * 0.1, h * 0.1])
    return clicks_to_boxes(clicks)


def preprocess(model: nn.Module, data: dict, device) -> dict:
    data = model.data_preprocessor(copy.deepcopy(data), False)
    return dict(
        inputs=data['inputs'].to(device), data_samples=data['data_samples'])
