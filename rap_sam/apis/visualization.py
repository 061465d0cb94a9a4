"""Drawing results and turning them into JSON, for the demos and the app.
Images are BGR uint8 arrays throughout.

Panoptic results are drawn by mmdet's ``DetLocalVisualizer`` (through
:class:`~rap_sam.visualization.RapSAMLocalVisualizer`); what mmdet does not
draw is drawn here: tracks labelled by id, prompt masks, clicks and boxes."""
import colorsys
from typing import List, Optional, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample

from rap_sam.visualization import RapSAMLocalVisualizer


def id_color(index: int) -> tuple:
    """A BGR colour for ``index``; consecutive ids get distant hues."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def mask_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a bool mask, JSON-ready."""
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def mask_box(mask: np.ndarray) -> Optional[List[int]]:
    """``[x1, y1, x2, y2]`` around a bool mask, or None if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def draw_masks(img: np.ndarray,
               masks: Sequence[np.ndarray],
               colors: Sequence[tuple],
               labels: Sequence[str] = (),
               alpha: float = 0.5) -> np.ndarray:
    """``img`` with each mask tinted in its colour, outlined, and labelled
    at its top-left corner."""
    out = img.copy()
    for mask, color in zip(masks, colors):
        if mask.any():
            out[mask] = (out[mask] * (1 - alpha) +
                         np.array(color) * alpha).astype(np.uint8)
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, color, 2)
    for mask, color, text in zip(masks, colors, labels):
        box = mask_box(mask)
        if box is not None and text:
            put_label(out, text, box[0], box[1], color)
    return out


def put_label(img: np.ndarray, text: str, x: int, y: int,
              color: tuple) -> None:
    """Text on a filled box of ``color``, kept inside the image."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (w, h), base = cv2.getTextSize(text, font, size, 1)
    x = int(min(max(x, 0), max(img.shape[1] - w - 4, 0)))
    y = int(min(max(y, 0), max(img.shape[0] - h - base - 4, 0)))
    cv2.rectangle(img, (x, y), (x + w + 4, y + h + base + 4), color, -1)
    dark = sum(color) < 3 * 140
    cv2.putText(img, text, (x + 2, y + h + 2), font, size,
                (255, 255, 255) if dark else (0, 0, 0), 1, cv2.LINE_AA)


def draw_prompts(img: np.ndarray, points, boxes, colors) -> np.ndarray:
    """Clicks as dots and boxes as rectangles, in their prompts' colours
    (points first, then boxes, as the predictor orders them)."""
    out = img.copy()
    points, boxes = np.asarray(points).reshape(-1,
                                               2), np.asarray(boxes).reshape(
                                                   -1, 4)
    for (x, y), color in zip(points, colors):
        cv2.circle(out, (int(x), int(y)), 6, (255, 255, 255), -1)
        cv2.circle(out, (int(x), int(y)), 4, color, -1)
    for box, color in zip(boxes, colors[len(points):]):
        cv2.rectangle(out, tuple(int(v) for v in box[:2]),
                      tuple(int(v) for v in box[2:]), color, 2)
    return out


def panoptic_segments(result, class_names: List[str]) -> List[dict]:
    """One dict per panoptic segment, with its mask as COCO RLE."""
    panoptic = result.pred_panoptic_seg.sem_seg[0].cpu().numpy()
    out = []
    for seg in result.pred_panoptic_seg.segments:
        rle = mask_rle(panoptic == seg['id'])
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


def draw_panoptic(img: np.ndarray, result, class_names: List[str],
                  palette: Sequence[tuple]) -> np.ndarray:
    """``img`` with the panoptic segments of ``result`` drawn by mmdet's
    ``DetLocalVisualizer`` (as ``DetInferencer`` and ``tools/test.py
    --show-dir`` draw them): each segment in its class colour (``palette``,
    RGB, one per class), outlined, and named at its centre."""
    visualizer = RapSAMLocalVisualizer(name='rap_sam_draw_panoptic')
    visualizer.dataset_meta = dict(
        classes=list(class_names), palette=[tuple(c) for c in palette])
    sample = DetDataSample(pred_panoptic_seg=result.pred_panoptic_seg)
    visualizer.add_datasample(
        'panoptic', img[..., ::-1], sample, draw_gt=False)
    drawn = visualizer.get_image()[..., ::-1]
    visualizer.close()
    return np.ascontiguousarray(drawn)


def draw_tracks(frame: np.ndarray, instances,
                class_names: List[str]) -> np.ndarray:
    """A frame with each track in its own colour, labelled ``#id class``."""
    masks = instances.masks.cpu().numpy()
    ids = instances.instances_id.tolist()
    return draw_masks(frame, masks, [id_color(i) for i in ids], [
        f'#{i} {class_names[c]}'
        for i, c in zip(ids, instances.labels.tolist())
    ])


def prompt_records(result, points, boxes,
                   class_names: List[str]) -> List[dict]:
    """One dict per prompt of :meth:`RapSAMPredictor.predict_prompts`
    (points first, then boxes): the prompt, its class, scores and mask."""
    inst = result.pred_instances
    prompts = [
        dict(type='point', xy=[float(v) for v in p])
        for p in np.asarray(points).reshape(-1, 2)
    ]
    prompts += [
        dict(type='box', xyxy=[float(v) for v in b])
        for b in np.asarray(boxes).reshape(-1, 4)
    ]
    masks = inst.masks.cpu().numpy()
    for prompt, mask, label, score, iou in zip(prompts, masks,
                                               inst.labels.tolist(),
                                               inst.scores.tolist(),
                                               inst.iou_scores.tolist()):
        prompt.update(
            category=class_names[label],
            label=label,
            score=round(score, 4),
            iou_score=round(iou, 4),
            area=int(mask.sum()),
            bbox=mask_box(mask),
            segmentation=mask_rle(mask))
    return prompts
