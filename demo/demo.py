"""Panoptic segmentation of an image or a folder of images.

    python demo/demo.py IMG_OR_DIR CONFIG [--weights CKPT] [--out-dir DIR]
        [--device cpu|cuda] [--scale W H] [--score-thr T]

For each image, writes DIR/NAME.png (the segments drawn over the image) and
DIR/NAME.json (one entry per segment: class, score, area, box, COCO RLE).
A folder shows a progress bar; unreadable images in it are skipped with a
message. Without --weights the model has random weights: it still runs end
to end and says so loudly.
"""
import json
import os
import os.path as osp

import mmcv
from demo_cli import base_parser, predictor_kwargs, user_errors
from tqdm import tqdm

from rap_sam.apis import InputError, RapSAMPredictor
from rap_sam.apis.inputs import IMAGE_EXTS
from rap_sam.apis.visualization import draw_panoptic, panoptic_segments


def parse_args(argv=None):
    parser = base_parser(__doc__, 'an image file or a folder of images')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=None,
        help='keep segments whose class score exceeds this (the config\'s '
        'object_mask_thr, 0.8, by default)')
    return parser.parse_args(argv)


def list_images(inputs: str):
    if osp.isdir(inputs):
        files = sorted(
            osp.join(inputs, f) for f in os.listdir(inputs)
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise InputError(f'No images ({", ".join(IMAGE_EXTS)}) in '
                             f'{inputs}')
        return files
    if not osp.isfile(inputs):
        raise InputError(f'No such image or folder: {inputs}')
    return [inputs]


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        images = list_images(args.inputs)
        predictor = RapSAMPredictor(args.config, args.weights, args.device,
                                    args.scale, **predictor_kwargs(args))
    if args.score_thr is not None:
        predictor.model.panoptic_fusion_head.test_cfg[
            'object_mask_thr'] = args.score_thr
    os.makedirs(args.out_dir, exist_ok=True)
    names, written = predictor.class_names, 0
    for path in tqdm(images, desc='segmenting', disable=len(images) == 1):
        try:
            img = predictor.read_image(path)
        except InputError as err:
            tqdm.write(f'skipping {path}: {err}')
            continue
        result = predictor.segment_image(img)
        stem = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0])
        mmcv.imwrite(
            draw_panoptic(img, result, names,
                          predictor.dataset_meta['palette']), f'{stem}.png')
        segments = panoptic_segments(result, names)
        with open(f'{stem}.json', 'w') as f:
            json.dump(
                dict(
                    image=path,
                    height=img.shape[0],
                    width=img.shape[1],
                    segments=segments), f)
        tqdm.write(f'{path}: {len(segments)} segments -> {stem}.png/.json')
        written += 1
    if not written:
        raise SystemExit('error: no image could be read.')


if __name__ == '__main__':
    main()
