"""Tiny COCO-panoptic and YouTube-VIS-2019 datasets in the official formats.

The images are flat-coloured shapes (rectangles and ellipses) whose masks
are known exactly, so tests can feed the ground truth back as predictions.
Each writer returns what it wrote, masks included.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from panopticapi.utils import id2rgb

from .coco_panoptic_categories import coco_panoptic_categories

# A few classes present in both datasets, so joint-training tests see the
# class spaces overlap. COCO ids: person, car, cat, dog; stuff: road, sky,
# grass, wall. YouTube-VIS-2019 ids: person, giant_panda, dog, cat, duck.
COCO_THING_POOL = (1, 3, 17, 18)
COCO_STUFF_POOL = (149, 187, 193, 199)
YTVIS_POOL = (1, 2, 8, 14, 13)
YTVIS_2019_NAMES = ('person', 'giant_panda', 'lizard', 'parrot', 'skateboard',
                    'sedan', 'ape', 'dog', 'snake', 'monkey', 'hand', 'rabbit',
                    'duck', 'cat', 'cow', 'fish', 'train', 'horse', 'turtle',
                    'bear', 'motorbike', 'giraffe', 'leopard', 'fox', 'deer',
                    'owl', 'surfboard', 'airplane', 'truck', 'zebra', 'tiger',
                    'elephant', 'snowboard', 'boat', 'shark', 'mouse', 'frog',
                    'eagle', 'earless_seal', 'tennis_racket')


def shape_mask(height: int, width: int, box: Sequence[int],
               ellipse: bool) -> np.ndarray:
    """Filled rectangle or ellipse inside ``box`` = (x1, y1, x2, y2),
    x2/y2 exclusive."""
    x1, y1, x2, y2 = box
    mask = np.zeros((height, width), dtype=np.uint8)
    if ellipse:
        center = ((x1 + x2 - 1) // 2, (y1 + y2 - 1) // 2)
        axes = (max((x2 - x1 - 1) // 2, 1), max((y2 - y1 - 1) // 2, 1))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1)
    else:
        mask[y1:y2, x1:x2] = 1
    return mask.astype(bool)


def mask_bbox(mask: np.ndarray) -> List[float]:
    """COCO ``[x, y, w, h]`` of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1)
    ]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths, starting with a run
    of zeros), as the official YouTube-VIS files store masks."""
    flat = mask.astype(np.uint8).flatten(order='F')
    bounds = np.concatenate([[0],
                             np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return dict(counts=counts, size=list(mask.shape))


def track_annotation(ann_id: int, video_id: int, category_id: int,
                     masks: Sequence[Optional[np.ndarray]], height: int,
                     width: int) -> dict:
    """A YouTube-VIS annotation: one track's per-frame masks (``None``
    where it is absent) as uncompressed RLEs, boxes and areas."""
    return dict(
        id=ann_id,
        video_id=video_id,
        category_id=category_id,
        iscrowd=0,
        height=height,
        width=width,
        length=1,
        segmentations=[
            None if m is None else uncompressed_rle(m) for m in masks
        ],
        bboxes=[None if m is None else mask_bbox(m) for m in masks],
        areas=[None if m is None else float(m.sum()) for m in masks])


def panoptic_split_dirs(root: str, split: str) -> Tuple[str, str]:
    """Create the image and PNG folders of ``split`` in the COCO panoptic
    layout, ``root/{split}`` and ``root/annotations/panoptic_{split}``, and
    return them."""
    img_dir = osp.join(root, split)
    seg_dir = osp.join(root, 'annotations', f'panoptic_{split}')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(seg_dir, exist_ok=True)
    return img_dir, seg_dir


def write_panoptic_png(path: str, segment_ids: np.ndarray) -> None:
    """Write a map of segment ids as a COCO panoptic PNG
    (id = R + 256G + 256^2B)."""
    cv2.imwrite(path, id2rgb(segment_ids)[..., ::-1])  # cv2 takes BGR


def _paint(canvas: np.ndarray, mask: np.ndarray, rng) -> None:
    color = rng.integers(30, 226, size=3)
    noise = rng.integers(-12, 13, size=(int(mask.sum()), 3))
    canvas[mask] = np.clip(color + noise, 0, 255)


def _thing_boxes(rng, height: int, width: int, count: int) -> list:
    """Boxes in separate vertical slots, so things never overlap."""
    slot = width // count
    boxes = []
    for k in range(count):
        w = int(rng.integers(max(slot // 2, 8), max(slot - 2, 9)))
        h = int(rng.integers(max(height // 4, 8), max(height // 2, 9)))
        x1 = k * slot + int(rng.integers(0, max(slot - w, 1)))
        y1 = int(rng.integers(0, height - h))
        boxes.append((x1, y1, min(x1 + w, width), y1 + h))
    return boxes


def _write_json(path: str, content: dict) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(content, f)


def _panoptic_image(rng, img_id: int, height: int, width: int) -> dict:
    """Two stuff bands (a void row between them) and 1-3 things on top."""
    split_row = int(rng.integers(height // 3, 2 * height // 3))
    top, bottom = rng.choice(COCO_STUFF_POOL, size=2, replace=False)
    rows = np.arange(height)[:, None]
    layers = [(int(top), 0, np.broadcast_to(rows < split_row,
                                            (height, width)).copy()),
              (int(bottom), 0,
               np.broadcast_to(rows > split_row, (height, width)).copy())]
    for box in _thing_boxes(rng, height, width, int(rng.integers(1, 4))):
        ellipse = bool(rng.random() < .5)
        layers.append((int(rng.choice(COCO_THING_POOL)), 1,
                       shape_mask(height, width, box, ellipse)))
    ids = rng.choice(np.arange(1, 256**3), size=len(layers), replace=False)
    segments = []
    taken = np.zeros((height, width), dtype=bool)
    for (category_id, isthing, mask), seg_id in reversed(
            list(zip(layers, ids))):  # things drawn last stay whole
        mask = mask & ~taken
        taken |= mask
        segments.insert(
            0,
            dict(
                id=int(seg_id),
                category_id=category_id,
                isthing=isthing,
                iscrowd=0,
                mask=mask))
    return dict(
        id=img_id,
        file_name=f'{img_id:012d}.jpg',
        height=height,
        width=width,
        segments=segments)


def make_coco_panoptic(root: str,
                       num_images: int = 3,
                       seed: int = 0,
                       splits: Sequence[str] = ('val2017', ),
                       image_size: Optional[Sequence[int]] = None) -> Dict:
    """Write a COCO panoptic dataset under ``root``::

        root/annotations/panoptic_{split}.json
        root/annotations/panoptic_{split}/<image>.png  (id = R + 256G + 256^2B)
        root/{split}/<image>.jpg

    ``splits`` are e.g. ``('train2017', 'val2017')``; ``image_size`` is
    ``(height, width)`` (default: random, 60-96 x 80-128). Returns
    ``{split: dict(ann_file, img_dir, seg_dir, images)}`` where each image
    lists its segments with ``id``, ``category_id``, ``isthing`` and the bool
    ``mask``.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for s, split in enumerate(splits):
        img_dir, seg_dir = panoptic_split_dirs(root, split)
        images, anns = [], []
        for k in range(num_images):
            height, width = image_size or (int(rng.integers(
                60, 97)), int(rng.integers(80, 129)))
            image = _panoptic_image(rng, 100000 * s + k + 1, height, width)
            canvas = np.zeros((height, width, 3), dtype=np.uint8)
            pan = np.zeros((height, width), dtype=np.int64)
            for seg in image['segments']:
                _paint(canvas, seg['mask'], rng)
                pan[seg['mask']] = seg['id']
            png_name = image['file_name'].replace('.jpg', '.png')
            cv2.imwrite(osp.join(img_dir, image['file_name']), canvas)
            write_panoptic_png(osp.join(seg_dir, png_name), pan)
            images.append(image)
            anns.append(
                dict(
                    image_id=image['id'],
                    file_name=png_name,
                    segments_info=[
                        dict(
                            id=g['id'],
                            category_id=g['category_id'],
                            iscrowd=g['iscrowd'],
                            area=int(g['mask'].sum()),
                            bbox=mask_bbox(g['mask']))
                        for g in image['segments']
                    ]))
        ann_file = osp.join(root, 'annotations', f'panoptic_{split}.json')
        _write_json(
            ann_file,
            dict(
                info=dict(description='rap_sam toy COCO panoptic'),
                licenses=[],
                images=[{
                    k: im[k]
                    for k in ('id', 'file_name', 'height', 'width')
                } for im in images],
                annotations=anns,
                categories=coco_panoptic_categories()))
        written[split] = dict(
            ann_file=ann_file, img_dir=img_dir, seg_dir=seg_dir, images=images)
    return written


def _toy_video(rng, video_id: int, num_frames: int, first_track: int) -> dict:
    """1-2 objects moving across a flat background; the second one enters
    at frame 1, so its frame-0 entry is ``None``."""
    height, width = int(rng.integers(64, 97)), int(rng.integers(96, 145))
    count = int(rng.integers(1, 3))
    tracks = []
    for k, box in enumerate(_thing_boxes(rng, height, width, count)):
        ellipse = bool(rng.random() < .5)
        masks = []
        for t in range(num_frames):
            dy = min(t, height - box[3])
            moved = (box[0], box[1] + dy, box[2], box[3] + dy)
            absent = k == 1 and t == 0 and num_frames > 1
            masks.append(
                None if absent else shape_mask(height, width, moved, ellipse))
        tracks.append(
            dict(
                id=first_track + k,
                category_id=int(rng.choice(YTVIS_POOL)),
                masks=masks))
    name = f'{video_id:04d}toy{video_id:06d}'
    return dict(
        id=video_id,
        name=name,
        height=height,
        width=width,
        file_names=[f'{name}/{t * 5:05d}.jpg' for t in range(num_frames)],
        tracks=tracks)


def make_youtube_vis(root: str,
                     num_videos: int = 2,
                     num_frames: int = 4,
                     seed: int = 0,
                     splits: Sequence[str] = ('train', 'valid'),
                     valid_annotations: bool = True) -> Dict:
    """Write a YouTube-VIS 2019 dataset under ``root``::

        root/{split}.json                     (the official format)
        root/{split}/JPEGImages/<video>/<frame>.jpg

    Masks are uncompressed RLE per frame (``None`` where the object is
    absent), as in the official files. With ``valid_annotations=False`` the
    ``valid`` json has ``annotations: null`` like the real one. Returns
    ``{split: dict(ann_file, img_dir, videos)}``; each video lists its
    ``tracks`` with ``id``, ``category_id`` and per-frame bool ``masks``.
    """
    rng = np.random.default_rng(seed)
    categories = [
        dict(id=i + 1, name=n, supercategory='object')
        for i, n in enumerate(YTVIS_2019_NAMES)
    ]
    written = {}
    next_track = 1
    for s, split in enumerate(splits):
        img_dir = osp.join(root, split, 'JPEGImages')
        videos, anns = [], []
        for k in range(num_videos):
            video = _toy_video(rng, 1000 * s + k + 1, num_frames, next_track)
            next_track += len(video['tracks'])
            h, w = video['height'], video['width']
            os.makedirs(osp.join(img_dir, video['name']), exist_ok=True)
            background = rng.integers(30, 226, size=3)
            for t, file_name in enumerate(video['file_names']):
                canvas = np.clip(
                    background + rng.integers(-12, 13, size=(h, w, 3)), 0,
                    255).astype(np.uint8)
                for track in video['tracks']:
                    if track['masks'][t] is not None:
                        _paint(canvas, track['masks'][t], rng)
                cv2.imwrite(osp.join(img_dir, file_name), canvas)
            for track in video['tracks']:
                anns.append(
                    track_annotation(track['id'], video['id'],
                                     track['category_id'], track['masks'], h,
                                     w))
            videos.append(video)
        keep_anns = split != 'valid' or valid_annotations
        ann_file = osp.join(root, f'{split}.json')
        _write_json(
            ann_file,
            dict(
                info=dict(description='rap_sam toy YouTube-VIS 2019'),
                licenses=[],
                videos=[
                    dict(
                        id=v['id'],
                        width=v['width'],
                        height=v['height'],
                        length=len(v['file_names']),
                        file_names=v['file_names']) for v in videos
                ],
                annotations=anns if keep_anns else None,
                categories=categories))
        written[split] = dict(
            ann_file=ann_file, img_dir=img_dir, videos=videos)
    return written
