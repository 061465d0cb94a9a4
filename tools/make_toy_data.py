"""Write a small learnable toy dataset in the official formats.

    python tools/make_toy_data.py ROOT [--coco-train 64] [--coco-val 16]
        [--videos 24] [--seed 0]

ROOT/coco: COCO panoptic (panoptic_{train,val}2017.json + PNGs + JPEGs);
ROOT/youtube_vis_2019: YouTube-VIS 2019 (official train.json + frames).
Unlike ``rap_sam.testing``'s toy data (random colours, for format tests),
a class here always looks the same (its colour and shape), so a model can
learn it: the data of the toy training run (``tools/toy_train_eval.py``).
Images are square (192-288 px). Each dataset folder gets a file TOY_DATA;
a folder that holds other files and no TOY_DATA (a real dataset, say) is
refused rather than overwritten.
"""
import argparse
import json
import os
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
positive_int = CLI['positive_int']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root')
    parser.add_argument('--coco-train', type=positive_int, default=64)
    parser.add_argument('--coco-val', type=positive_int, default=16)
    parser.add_argument('--videos', type=positive_int, default=24)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import cv2
import numpy as np

from rap_sam.testing.coco_panoptic_categories import coco_panoptic_categories
from rap_sam.testing.toy_datasets import (YTVIS_2019_NAMES, mask_bbox,
                                          panoptic_split_dirs, shape_mask,
                                          track_annotation, write_panoptic_png)
from rap_sam.utils.output_files import make_out_dir
from rap_sam.utils.user_errors import UserError, cli_errors

#: The file that marks a folder as this tool's (rewritten on every run).
MARKER = 'TOY_DATA'

# BGR colour and shape per class; classes in both datasets look alike.
COCO_THINGS = {
    1: ((40, 40, 220), True),
    3: ((220, 80, 30), False),
    17: ((30, 150, 250), True),
    18: ((170, 40, 170), False)
}
COCO_STUFF = {
    149: (105, 105, 105),
    187: (235, 200, 150),
    193: (60, 170, 60),
    199: (80, 110, 160)
}
YTVIS = {
    1: COCO_THINGS[1],
    8: COCO_THINGS[18],
    14: COCO_THINGS[17],
    2: ((245, 245, 245), True),
    13: ((40, 220, 230), False)
}


def _paint(canvas, mask, color, rng):
    noise = rng.integers(-15, 16, size=(int(mask.sum()), 3))
    canvas[mask] = np.clip(np.array(color) + noise, 0, 255)


def _boxes(rng, height, width, count):
    """Non-overlapping boxes in vertical slots, a quarter to a half tall."""
    slot = width // count
    boxes = []
    for k in range(count):
        w = int(rng.integers(slot // 2, slot - 2))
        h = int(rng.integers(height // 4, height // 2))
        x1 = k * slot + int(rng.integers(0, slot - w))
        y1 = int(rng.integers(0, height - h))
        boxes.append((x1, y1, x1 + w, y1 + h))
    return boxes


def claim_folder(root: str) -> None:
    """Make ``root`` a toy dataset folder, refusing one that holds files
    this tool did not write: the toy annotation files have the official
    names (panoptic_train2017.json, train.json, ...), so pointed at a real
    dataset they would replace its files."""
    marker = osp.join(root, MARKER)
    if osp.isdir(root) and os.listdir(root) and not osp.isfile(marker):
        raise UserError(
            f'{root} holds files that tools/make_toy_data.py did not write '
            f'(no {MARKER} file), and toy data would overwrite them: give '
            'an empty or new folder (or delete this one if it is toy data '
            'from an older version).')
    make_out_dir(root)
    with open(marker, 'w') as f:
        f.write('Toy data written by tools/make_toy_data.py; the tool may '
                'rewrite this folder.\n')


def _write_json(path, content):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(content, f)


def _coco_image(rng):
    # Square: a click is encoded relative to the image and the features'
    # coordinates span the padded input, so padding would shift one against
    # the other (by a third for 3:2 images at 128 px; a few % at COCO size).
    height = width = int(rng.integers(192, 289))
    split = int(rng.integers(height // 3, 2 * height // 3))
    top, bottom = rng.choice(list(COCO_STUFF), size=2, replace=False)
    rows = np.arange(height)[:, None] < split
    layers = [(int(top), np.broadcast_to(rows, (height, width))),
              (int(bottom), np.broadcast_to(~rows, (height, width)))]
    for box in _boxes(rng, height, width, int(rng.integers(1, 3))):
        cat = int(rng.choice(list(COCO_THINGS)))
        layers.append((cat, shape_mask(height, width, box,
                                       COCO_THINGS[cat][1])))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    pan = np.zeros((height, width), dtype=np.int64)
    taken = np.zeros((height, width), dtype=bool)
    segments = []
    ids = rng.choice(np.arange(1, 256**3), size=len(layers), replace=False)
    for (cat, mask), seg_id in reversed(list(zip(layers, ids.tolist()))):
        # things are drawn first from the top layer down, so they stay whole
        mask = mask & ~taken
        taken |= mask
        color = COCO_STUFF[cat] if cat in COCO_STUFF else COCO_THINGS[cat][0]
        _paint(canvas, mask, color, rng)
        pan[mask] = seg_id
        segments.append(
            dict(
                id=seg_id,
                category_id=cat,
                iscrowd=0,
                area=int(mask.sum()),
                bbox=mask_bbox(mask)))
    return canvas, pan, segments


def make_toy_coco(root, splits, seed=0):
    claim_folder(root)
    rng = np.random.default_rng(seed)
    for s, (split, count) in enumerate(splits.items()):
        img_dir, seg_dir = panoptic_split_dirs(root, split)
        images, anns = [], []
        for k in range(count):
            img_id = 100000 * s + k + 1
            canvas, pan, segments = _coco_image(rng)
            name = f'{img_id:012d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), canvas)
            write_panoptic_png(osp.join(seg_dir, name + '.png'), pan)
            images.append(
                dict(
                    id=img_id,
                    file_name=name + '.jpg',
                    height=pan.shape[0],
                    width=pan.shape[1]))
            anns.append(
                dict(
                    image_id=img_id,
                    file_name=name + '.png',
                    segments_info=segments))
        _write_json(
            osp.join(root, 'annotations', f'panoptic_{split}.json'),
            dict(
                info={},
                licenses=[],
                images=images,
                annotations=anns,
                categories=coco_panoptic_categories()))


def make_toy_ytvis(root, num_videos, seed=0, split='train'):
    claim_folder(root)
    rng = np.random.default_rng(seed)
    videos, anns = [], []
    for v in range(num_videos):
        height = width = int(rng.integers(192, 289))
        frames = int(rng.integers(3, 7))
        name = f'toy{v:05d}'
        tracks = []
        for box in _boxes(rng, height, width, int(rng.integers(1, 3))):
            cat = int(rng.choice(list(YTVIS)))
            step = rng.integers(-4, 5, size=2)
            masks = []
            for t in range(frames):
                dx, dy = (int(d) for d in step * t)
                moved = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
                moved = tuple(
                    int(np.clip(c, 0, lim))
                    for c, lim in zip(moved, (width, height) * 2))
                masks.append(shape_mask(height, width, moved, YTVIS[cat][1]))
            tracks.append((cat, masks))
        background = rng.integers(60, 140, size=3)
        file_names = [f'{name}/{t * 5:05d}.jpg' for t in range(frames)]
        os.makedirs(osp.join(root, split, 'JPEGImages', name), exist_ok=True)
        for t, file_name in enumerate(file_names):
            canvas = np.clip(
                background + rng.integers(-15, 16, size=(height, width, 3)), 0,
                255).astype(np.uint8)
            for cat, masks in tracks:
                _paint(canvas, masks[t], YTVIS[cat][0], rng)
            cv2.imwrite(osp.join(root, split, 'JPEGImages', file_name), canvas)
        for cat, masks in tracks:
            present = [m if m.any() else None for m in masks]
            anns.append(
                track_annotation(
                    len(anns) + 1, v + 1, cat, present, height, width))
        videos.append(
            dict(
                id=v + 1,
                width=width,
                height=height,
                length=frames,
                file_names=file_names))
    categories = [
        dict(id=i + 1, name=n, supercategory='object')
        for i, n in enumerate(YTVIS_2019_NAMES)
    ]
    _write_json(
        osp.join(root, f'{split}.json'),
        dict(
            info={},
            licenses=[],
            videos=videos,
            annotations=anns,
            categories=categories))


def make_toy_data(root, coco_train=64, coco_val=16, videos=24, seed=0):
    make_toy_coco(
        osp.join(root, 'coco'), dict(train2017=coco_train, val2017=coco_val),
        seed)
    make_toy_ytvis(osp.join(root, 'youtube_vis_2019'), videos, seed + 1)


def main(argv=None):
    args = parse_args(argv)
    with cli_errors():
        make_out_dir(args.root)
        make_toy_data(args.root, args.coco_train, args.coco_val, args.videos,
                      args.seed)


if __name__ == '__main__':
    main()
