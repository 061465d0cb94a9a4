"""Reading and checking what users hand to the API.

Every problem with the input raises :class:`InputError`, whose message is
meant for the user as it stands (the demos and the web app show it instead
of a stack trace).
"""
import os
import os.path as osp
from typing import Iterator, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np

from rap_sam.utils.user_errors import UserError

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


class InputError(UserError, ValueError):
    """Bad input (file, frames or prompts), with a message for the user."""


def as_bgr_image(img: np.ndarray, what: str = 'image') -> np.ndarray:
    """A uint8 ``[H, W, 3]`` array from a colour, grayscale or RGBA one."""
    img = np.asarray(img)
    if img.dtype == object or not np.issubdtype(img.dtype, np.number):
        raise InputError(f'The {what} is not an array of pixel values.')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise InputError(f'The {what} has shape {img.shape}; expected '
                         '[H, W], [H, W, 3] or [H, W, 4].')
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f'The {what} is empty ({img.shape[0]} x '
                         f'{img.shape[1]} pixels).')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]  # the alpha channel carries nothing to segment
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def read_image(img: Union[str, np.ndarray]) -> np.ndarray:
    """A BGR uint8 image ``[H, W, 3]`` from a path or an array (arrays are
    taken as BGR, OpenCV's order)."""
    if isinstance(img, (str, os.PathLike)):
        path = os.fspath(img)
        if not osp.isfile(path):
            raise InputError(f'Image not found: {path}')
        try:
            array = mmcv.imread(path, flag='color')
        except Exception:  # mmcv raises assorted errors on corrupt files
            array = None
        if array is None or array.size == 0:
            raise InputError(f'Cannot read {path} as an image (not an image '
                             'file, or a corrupt one).')
        return array
    if img is None:
        raise InputError('No image given.')
    return as_bgr_image(img)


def _video_file_frames(path: str) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise InputError(f'Cannot open {path} as a video (not a video '
                             'file, or a codec OpenCV cannot read).')
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def _folder_frames(path: str) -> Iterator[np.ndarray]:
    files = sorted(
        f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise InputError(f'No images ({", ".join(IMAGE_EXTS)}) in the '
                         f'folder {path}.')
    for name in files:
        yield read_image(osp.join(path, name))


def iter_frames(
    video: Union[str, np.ndarray,
                 Sequence[np.ndarray]]) -> Iterator[np.ndarray]:
    """BGR uint8 frames, read lazily so that long videos never sit in
    memory whole.

    Args:
        video: A video file (anything OpenCV reads: mp4, avi, webm ...), a
            folder of frames (sorted by name), a ``[T, H, W, 3]`` array or a
            sequence of ``[H, W, 3]`` arrays (BGR).
    """
    if isinstance(video, (str, os.PathLike)):
        path = os.fspath(video)
        if osp.isdir(path):
            frames = _folder_frames(path)
        elif osp.isfile(path):
            frames = _video_file_frames(path)
        else:
            raise InputError(f'Video not found: {path}')
        name = path
    elif video is None:
        raise InputError('No video given.')
    else:
        frames = (as_bgr_image(f, 'video frame') for f in video)
        name = 'the video'
    shape, count = None, 0
    for frame in frames:
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(
                f'Frame {count} of {name} is {frame.shape[1]} x '
                f'{frame.shape[0]} pixels, the first was {shape[1]} x '
                f'{shape[0]}: all frames of a video must have one size.')
        count += 1
        yield frame
    if count == 0:
        raise InputError(f'{name} has no frames (empty, or a file OpenCV '
                         'cannot decode).')


def _as_rows(values, width: int, what: str) -> np.ndarray:
    if values is None:
        return np.zeros((0, width), dtype=np.float32)
    try:
        rows = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f'{what} must be numbers, got {values!r}.')
    if rows.size == 0:
        return np.zeros((0, width), dtype=np.float32)
    rows = rows.reshape(-1, width) if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[1] != width:
        raise InputError(f'{what} must be [N, {width}], got shape '
                         f'{tuple(rows.shape)}.')
    if not np.isfinite(rows).all():
        raise InputError(f'{what} contain non-finite numbers.')
    return rows


def check_prompts(points, boxes, width: int,
                  height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validated ``[N, 2]`` points and ``[M, 4]`` boxes, in image pixels.

    A point must lie inside the image; a box must have x2 > x1, y2 > y1 and
    overlap the image, and is clipped to it.
    """
    points = _as_rows(points, 2, 'Points (x, y)')
    boxes = _as_rows(boxes, 4, 'Boxes (x1, y1, x2, y2)')
    if len(points) == 0 and len(boxes) == 0:
        raise InputError('No prompt: give at least one point (x, y) or box '
                         '(x1, y1, x2, y2).')
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(
                f'The point ({x:g}, {y:g}) is outside the image, which is '
                f'{width} x {height} pixels.')
    for x1, y1, x2, y2 in boxes:
        if x2 <= x1 or y2 <= y1:
            raise InputError(f'The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) '
                             'needs x2 > x1 and y2 > y1.')
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InputError(
                f'The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the '
                f'image, which is {width} x {height} pixels.')
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return points, boxes


def parse_numbers(text: str, count: int, what: str) -> list:
    """``"x,y"``-style command-line values -> ``count`` floats."""
    try:
        values = [float(v) for v in text.replace(' ', '').split(',')]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f'{what} must be {count} comma-separated numbers, '
                         f'got {text!r}.')
    return values
