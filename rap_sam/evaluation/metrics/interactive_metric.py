"""COCO-SAM: single-prompt interactive segmentation quality."""
import logging
from typing import Dict, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log


def _as_bool_masks(masks) -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu()
        masks = masks if masks.dtype == torch.bool else masks > 0.5
        return masks.numpy()
    masks = np.asarray(masks)
    return masks if masks.dtype == bool else masks > 0.5


def mask_ious(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each predicted mask [N, H, W] with its ground truth."""
    pred = pred.reshape(len(pred), -1)
    gt = gt.reshape(len(gt), -1)
    inter = np.logical_and(pred, gt).sum(1)
    union = np.logical_or(pred, gt).sum(1)
    return inter / np.maximum(union, 1)


@METRICS.register_module()
class InteractiveMetric(BaseMetric):
    """mIoU and NoC of one prompt per segment (the COCO-SAM protocol).

    Reads, per image, ``gt_instances_collected`` (see ``PackPromptInputs``:
    ``ori_masks`` RLEs, ``is_box``, ``is_thing``) and the model's
    ``pred_instances.masks`` [N, H_ori, W_ori], one per prompt in the same
    order (bool; other dtypes are thresholded at 0.5). IoU is taken at the
    original resolution.

    Reported (prefix ``coco_sam``): ``mIoU`` over click prompts, ``NoC@t``
    for t in ``iou_thrs`` (with a single click a segment costs 1 click when
    it reaches IoU t and ``max_clicks`` otherwise), ``mIoU_things`` /
    ``mIoU_stuff`` over click prompts, ``box_mIoU`` over box prompts when
    there are any, the prompt counts and ``num_skipped`` (segments that got
    no prompt, see ``GenerateSegmentPrompts``).

    One result is kept per image, so ``collect_results`` drops exactly the
    padded duplicates of a distributed sampler (keeping one entry per
    segment would make it cut the list at the number of images).
    """
    default_prefix: Optional[str] = 'coco_sam'

    def __init__(self,
                 iou_thrs: Sequence[float] = (0.5, 0.8, 0.85, 0.9),
                 max_clicks: int = 20,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thrs = tuple(iou_thrs)
        self.max_clicks = max_clicks

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            prompts = sample['gt_instances_collected']
            rles = prompts['ori_masks']
            pred = _as_bool_masks(sample['pred_instances']['masks'])
            h, w = sample['ori_shape']
            where = sample.get('img_path', sample.get('img_id'))
            if len(pred) != len(rles):
                raise ValueError(
                    f'{where}: {len(pred)} predicted masks for '
                    f'{len(rles)} prompts; the model must return one mask '
                    'per prompt, in prompt order.')
            if len(rles) and pred.shape[1:] != (h, w):
                raise ValueError(
                    f'{where}: predicted masks are {tuple(pred.shape[1:])}, '
                    f'expected the original image size {(h, w)}.')
            gt = mask_utils.decode(list(rles)).transpose(2, 0, 1) \
                if len(rles) else np.zeros((0, h, w), dtype=np.uint8)
            self.results.append(
                dict(
                    ious=mask_ious(pred, gt.astype(bool)),
                    is_box=np.asarray(prompts['is_box'], dtype=bool),
                    is_thing=np.asarray(prompts['is_thing'], dtype=bool),
                    skipped=int(sample.get('num_skipped_prompts', 0))))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        ious = np.concatenate([r['ious'] for r in results] + [np.zeros(0)])
        is_box = np.concatenate([r['is_box']
                                 for r in results] + [np.zeros(0, bool)])
        is_thing = np.concatenate([r['is_thing']
                                   for r in results] + [np.zeros(0, bool)])
        click = ious[~is_box]
        metrics = dict(
            num_clicks=int(click.size),
            num_boxes=int(is_box.sum()),
            num_skipped=sum(r['skipped'] for r in results))
        if metrics['num_skipped']:
            print_log(
                f"{metrics['num_skipped']} segment(s) got no prompt (empty "
                'after the resize) and are not counted.',
                logger='current',
                level=logging.WARNING)
        if click.size:
            metrics['mIoU'] = float(click.mean())
            for thr in self.iou_thrs:
                metrics[f'NoC@{thr}'] = float(
                    np.where(click >= thr, 1, self.max_clicks).mean())
        for name, group in (('things', is_thing), ('stuff', ~is_thing)):
            selected = ious[~is_box & group]
            if selected.size:
                metrics[f'mIoU_{name}'] = float(selected.mean())
        if is_box.any():
            metrics['box_mIoU'] = float(ious[is_box].mean())
        return metrics
