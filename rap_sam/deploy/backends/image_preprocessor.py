"""The model's input from a BGR image, in numpy and OpenCV."""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np


class ImagePreprocessor:
    """mmdet's ``Resize(keep_ratio=True)`` followed by RAP-SAM's data
    preprocessor (``DetDataPreprocessor``: BGR -> RGB, ``(x - mean) /
    std`` in float32, zero padding), without torch, giving the same
    tensor.

    Args:
        scale (tuple): ``(w, h)`` the image is resized to fit.
        mean (list[float]): Per channel, in the model's channel order.
        std (list[float]): Per channel.
        bgr_to_rgb (bool): Swap BGR to RGB before normalising.
        size_divisor (int): Pad height and width up to a multiple of it.
        pad_shape (tuple, optional): ``(h, w)`` to pad every image to
            instead (a graph exported for one input shape); an image that
            would not fit it after the resize (a portrait photo in a
            landscape shape) is resized to fit it instead, keeping its
            aspect ratio: the network sees it smaller than at ``scale``.
        pad_value (float): The padding's value (after normalisation).
    """

    def __init__(self,
                 scale: Tuple[int, int],
                 mean: Sequence[float],
                 std: Sequence[float],
                 bgr_to_rgb: bool = True,
                 size_divisor: int = 1,
                 pad_shape: Optional[Tuple[int, int]] = None,
                 pad_value: float = 0.0):
        self.scale = (int(scale[0]), int(scale[1]))
        # torch's float32 buffers: the same two roundings per value.
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.bgr_to_rgb = bool(bgr_to_rgb)
        self.size_divisor = int(size_divisor or 1)
        self.pad_shape = tuple(pad_shape) if pad_shape else None
        self.pad_value = float(pad_value)

    def resized_size(self, width: int, height: int) -> Tuple[int, int]:
        """mmcv's ``rescale_size``: ``(w, h)`` after fitting
        :attr:`scale`; and then, with a :attr:`pad_shape`, within it."""
        long_edge, short_edge = max(self.scale), min(self.scale)
        factor = min(long_edge / max(height, width),
                     short_edge / min(height, width))
        size = int(width * factor + 0.5), int(height * factor + 0.5)
        if self.pad_shape is not None and (size[1] > self.pad_shape[0]
                                           or size[0] > self.pad_shape[1]):
            factor = min(self.pad_shape[0] / height, self.pad_shape[1] / width)
            size = (min(int(width * factor + 0.5), self.pad_shape[1]),
                    min(int(height * factor + 0.5), self.pad_shape[0]))
        return size

    def __call__(self, img: np.ndarray) -> Tuple[np.ndarray, dict]:
        """``[H, W, 3]`` uint8 BGR -> (``[1, 3, Hp, Wp]`` float32, meta).

        The meta holds what mmdet's samples carry: ``ori_shape``,
        ``img_shape`` (resized), ``scale_factor`` ``(w, h)`` and
        ``batch_input_shape`` (padded), so the torch post-processing reads
        it as it reads a ``DetDataSample``'s metainfo.
        """
        height, width = img.shape[:2]
        new_w, new_h = self.resized_size(width, height)
        # mmcv.imresize: OpenCV's bilinear resize, skipped by neither.
        resized = cv2.resize(
            img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if self.pad_shape is not None:
            pad_h, pad_w = self.pad_shape
        else:
            d = self.size_divisor
            pad_h, pad_w = -(-new_h // d) * d, -(-new_w // d) * d
        batch = np.empty((1, 3, pad_h, pad_w), np.float32)
        batch[..., new_h:, :] = self.pad_value
        batch[..., :new_h, new_w:] = self.pad_value
        # A channel at a time, written where it goes: each value converted
        # to float32, then the same subtraction and division as torch's
        # (in 5x less time than one pass per operation over the whole
        # transposed image, which strides across the channels).
        order = (2, 1, 0) if self.bgr_to_rgb else (0, 1, 2)
        for c, src in enumerate(order):
            plane = batch[0, c, :new_h, :new_w]
            np.subtract(
                resized[:, :, src],
                self.mean[c, 0, 0],
                out=plane,
                dtype=np.float32)
            np.divide(plane, self.std[c, 0, 0], out=plane)
        meta = dict(
            ori_shape=(height, width),
            img_shape=(new_h, new_w),
            scale_factor=(new_w / width, new_h / height),
            batch_input_shape=(pad_h, pad_w),
            pad_shape=(pad_h, pad_w))
        return batch, meta
