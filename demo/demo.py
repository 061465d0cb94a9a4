"""Panoptic segmentation of an image or a folder of images.

    python demo/demo.py IMG_OR_DIR CONFIG [--weights CKPT] [--out-dir DIR]
        [--device cpu|cuda]

For each image, writes DIR/NAME.png (the segments drawn over the image) and
DIR/NAME.json (one entry per segment: class, score, area, box, COCO RLE).
Without --weights the model has random weights: it still runs end to end
and says so loudly.
"""
import argparse
import json
import os
import os.path as osp
import sys

import mmcv
import numpy as np
import pycocotools.mask as mask_util
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.visualization import DetLocalVisualizer
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from rap_sam.apis import RapSAMPredictor  # noqa: E402

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='config, e.g. '
                        'configs/rap_sam/eval_rap_sam_coco.py')
    parser.add_argument('--weights', help='checkpoint (rapsam_r50_12e.pth)')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda or cuda:N (default: GPU if any)')
    parser.add_argument(
        '--score-thr', type=float, default=None,
        help='keep segments whose class score exceeds this (the config\'s '
        'object_mask_thr, 0.8, by default)')
    return parser.parse_args(argv)


def list_images(inputs: str):
    if osp.isdir(inputs):
        files = sorted(
            osp.join(inputs, f) for f in os.listdir(inputs)
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise SystemExit(f'No images ({", ".join(IMAGE_EXTS)}) in '
                             f'{inputs}')
        return files
    if not osp.isfile(inputs):
        raise SystemExit(f'No such image or folder: {inputs}')
    return [inputs]


def segments_json(result, class_names):
    """One dict per panoptic segment, with its mask as COCO RLE."""
    panoptic = result.pred_panoptic_seg.sem_seg[0].cpu().numpy()
    out = []
    for seg in result.pred_panoptic_seg.segments:
        region = np.asfortranarray(panoptic == seg['id'], dtype=np.uint8)
        rle = mask_util.encode(region)
        rle['counts'] = rle['counts'].decode('ascii')
        x, y, w, h = mask_util.toBbox(rle).tolist()
        out.append(
            dict(
                id=int(seg['id']),
                category=class_names[seg['label']],
                label=int(seg['label']),
                isthing=bool(seg['isthing']),
                instance=int(seg['id'] // INSTANCE_OFFSET),
                score=round(float(seg['score']), 4),
                area=int(seg['area']),
                bbox=[x, y, x + w, y + h],
                segmentation=rle))
    return out


def main(argv=None):
    args = parse_args(argv)
    images = list_images(args.inputs)
    predictor = RapSAMPredictor(args.config, args.weights, args.device)
    if args.score_thr is not None:
        predictor.model.panoptic_fusion_head.test_cfg[
            'object_mask_thr'] = args.score_thr
    visualizer = DetLocalVisualizer()
    visualizer.dataset_meta = predictor.dataset_meta
    os.makedirs(args.out_dir, exist_ok=True)
    names = predictor.dataset_meta['classes']
    for path in tqdm(images, desc='segmenting', disable=len(images) == 1):
        try:
            img = predictor.read_image(path)
        except (OSError, ValueError) as err:
            tqdm.write(f'skipping {path}: {err}')
            continue
        result = predictor.segment_image(img)
        stem = osp.splitext(osp.basename(path))[0]
        segments = segments_json(result, names)
        out_png = osp.join(args.out_dir, f'{stem}.png')
        if segments:
            # Only the panoptic map is drawn: instances would cover it twice.
            shown = result.clone()
            del shown.pred_instances
            visualizer.add_datasample(
                stem, mmcv.bgr2rgb(img), shown, draw_gt=False, show=False,
                out_file=out_png)
        else:
            # mmdet's drawer cannot draw an empty map; show the image as is.
            mmcv.imwrite(img, out_png)
        with open(osp.join(args.out_dir, f'{stem}.json'), 'w') as f:
            json.dump(dict(image=path, height=img.shape[0],
                           width=img.shape[1], segments=segments), f)
        print(f'{path}: {len(segments)} segments -> '
              f'{osp.join(args.out_dir, stem)}.png/.json')


if __name__ == '__main__':
    main()
