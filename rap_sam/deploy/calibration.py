"""Calibration data for int8 post-training quantization: a folder of
images, preprocessed as the export's deploy.json says, and the feeds each
graph of an export folder takes on them."""
import os
import os.path as osp
from typing import Callable, Iterable, Iterator, List, Mapping, Optional

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from rap_sam.apis.inputs import IMAGE_EXTS, read_image
from rap_sam.models.utils.prompts import CLICK_RADIUS
from rap_sam.utils.user_errors import UserError


class CalibrationError(UserError):
    """A calibration folder that is missing, not a folder, or holds no
    images."""


def calibration_images(calib_dir,
                       max_images: Optional[int] = None) -> List[str]:
    """The image files directly in ``calib_dir``, sorted by name, at most
    ``max_images`` of them (spread evenly over the sorted list, so a
    folder sorted by scene still gives every scene).

    Raises:
        CalibrationError: no folder given, a missing path, a file instead
            of a folder, a folder without images.
    """
    if calib_dir is None:
        raise CalibrationError(
            'int8 quantization needs calibration images: give a folder of '
            'typical photos (--calib DIR), a few dozen is enough.')
    calib_dir = os.fspath(calib_dir)
    if not osp.exists(calib_dir):
        raise CalibrationError(f'Calibration folder not found: {calib_dir}')
    if not osp.isdir(calib_dir):
        raise CalibrationError(
            f'The calibration images must be a folder, not a file: '
            f'{calib_dir}')
    files = sorted(
        osp.join(calib_dir, name) for name in os.listdir(calib_dir)
        if osp.splitext(name)[1].lower() in IMAGE_EXTS
        and osp.isfile(osp.join(calib_dir, name)))
    if not files:
        raise CalibrationError(
            f'No images in the calibration folder {calib_dir} (looked for '
            f'{", ".join(IMAGE_EXTS)}): put a few dozen typical photos '
            'there.')
    if max_images is not None and len(files) > max_images:
        picks = np.linspace(0, len(files) - 1, max_images).round()
        files = [files[int(i)] for i in picks]
    return files


def calibration_prompts(width: int, height: int, grid: int = 3) -> np.ndarray:
    """``[grid * grid + 2, 4]`` prompt boxes on a ``width x height`` resized
    image: clicks on a regular grid, as the model takes them (6-pixel
    boxes), then a box around the centre half and the whole image, so the
    prompt decoder is calibrated on both kinds of prompt."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    points = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    clicks = np.concatenate([points - CLICK_RADIUS, points + CLICK_RADIUS],
                            axis=1)
    boxes = np.array([[width / 4, height / 4, width * 3 / 4, height * 3 / 4],
                      [0, 0, width, height]])
    return np.concatenate([clicks, boxes]).astype(np.float32)


class FeedsReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a sequence of feeds
    (input name -> array), each given as a thunk so that only one image's
    feeds are in memory at a time.

    Args:
        feeds (iterable): Callables returning one feed dict each.
        input_names (list[str]): The graph's inputs; other keys of a feed
            dict are dropped (a decoder gets all encoder outputs).
    """

    def __init__(self, feeds: Iterable[Callable[[], Mapping[str, np.ndarray]]],
                 input_names: List[str]):
        self._feeds = list(feeds)
        self.input_names = list(input_names)
        self._iter: Optional[Iterator] = None
        self.rewind()

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> Optional[dict]:
        make = next(self._iter, None)
        if make is None:
            return None
        feed = make()
        return {name: feed[name] for name in self.input_names}

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only feeds ``[start_index, end_index)`` (ONNX Runtime's
        strided calibration, which frees each stride's activations)."""
        self._iter = iter(self._feeds[start_index:end_index])


def read_calibration_image(path: str) -> np.ndarray:
    """The BGR image at ``path``; an unreadable file is a
    :class:`CalibrationError` naming it (as is one past the pixel limit)."""
    try:
        return read_image(path)
    except UserError as err:
        raise CalibrationError(f'Calibration image {path}: {err}') from err


def graph_feeds(export_dir: str, images: List[str]) -> dict:
    """Per graph of the fp32 export in ``export_dir``, one feed thunk per
    calibration image: the preprocessed image for the encoder; for the
    decoders the fp32 encoder's outputs on it (recomputed per graph rather
    than kept: at 800 x 1344 they are tens of MB per image), plus
    :func:`calibration_prompts` for the prompt decoder."""
    from .backends import DeployedModel
    model = DeployedModel(export_dir, 'onnxruntime', 'fp32')
    spec = model.spec

    def encoder_feed(path):
        image, _ = model.preprocess(read_calibration_image(path))
        return {spec.image_input: image}

    def decoder_feed(path):
        image, _ = model.preprocess(read_calibration_image(path))
        return model.encode(image)

    def prompt_feed(path):
        image, meta = model.preprocess(read_calibration_image(path))
        feeds = model.encode(image)
        height, width = meta['img_shape'][:2]
        feeds[spec.boxes_input] = calibration_prompts(width, height)
        feeds[spec.img_shape_input] = np.asarray((height, width),
                                                 spec.img_shape_dtype)
        return feeds

    makers = dict(
        image_encoder=encoder_feed,
        panoptic_decoder=decoder_feed,
        prompt_decoder=prompt_feed)
    return {
        name: [lambda path=path, make=make: make(path) for path in images]
        for name, make in makers.items()
    }
