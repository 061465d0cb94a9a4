"""COCO-SAM: single-prompt interactive segmentation quality."""
import logging
from typing import Dict, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional import ReferenceAveragingError, reference_segment_subset


def _as_bool_masks(masks) -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu()
        masks = masks if masks.dtype == torch.bool else masks > 0.5
        return masks.numpy()
    masks = np.asarray(masks)
    return masks if masks.dtype == bool else masks > 0.5


def mask_ious(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each predicted mask [N, H, W] with its ground truth."""
    # Explicit sizes: reshape cannot infer -1 for an image without prompts.
    pred = pred.reshape(len(pred), int(np.prod(pred.shape[1:])))
    gt = gt.reshape(len(gt), int(np.prod(gt.shape[1:])))
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
    segment would make it cut the list at the number of images), and the
    figures do not depend on the number of processes.

    The reference kept one entry per segment, so its published mIoU
    averages only the first segments of each process, as many as there are
    images (see :mod:`rap_sam.evaluation.functional.reference_averaging`).
    ``reference_averaging=dict(num_processes=8)`` also reports that figure
    for a run on that many processes: ``reference_mIoU``,
    ``reference_NoC@t`` and ``reference_num_clicks`` (how many segments it
    averaged), over click prompts. Add ``zip_longest_collect=True`` to
    replay mmengine >= 0.10.3 instead of the 0.8.4 the reference pins (the
    two differ only on tiny datasets). Only the averaging is replayed: the
    IoUs themselves are ours (original resolution).
    """
    default_prefix: Optional[str] = 'coco_sam'

    def __init__(self,
                 iou_thrs: Sequence[float] = (0.5, 0.8, 0.85, 0.9),
                 max_clicks: int = 20,
                 reference_averaging: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thrs = tuple(iou_thrs)
        self.max_clicks = max_clicks
        self.reference_averaging = self._check_reference_averaging(
            reference_averaging)

    @staticmethod
    def _check_reference_averaging(option: Optional[dict]) -> Optional[dict]:
        if option is None:
            return None
        usage = ('reference_averaging must be dict(num_processes=N) with N '
                 'the process count of the reference run to replay (e.g. 8), '
                 'optionally zip_longest_collect=True')
        if not isinstance(option, dict):
            raise ReferenceAveragingError(f'{usage}; got {option!r}.')
        unknown = set(option) - {'num_processes', 'zip_longest_collect'}
        num = option.get('num_processes')
        if unknown or isinstance(num, bool) or not isinstance(num, int) \
                or num < 1 or not isinstance(
                    option.get('zip_longest_collect', False), bool):
            raise ReferenceAveragingError(f'{usage}; got {dict(option)!r}.')
        return dict(
            num_processes=num,
            zip_longest_collect=option.get('zip_longest_collect', False))

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
        if self.reference_averaging is not None:
            metrics.update(self._reference_metrics(results))
        return metrics

    def _reference_metrics(self, results: list) -> Dict[str, float]:
        """The reference's figures for its number of processes; ``results``
        are in dataset order (one per image, as collect_results returns
        them), which is the order the reference's sampler dealt from."""
        subset = reference_segment_subset(
            [r['ious'][~r['is_box']] for r in results],
            **self.reference_averaging)
        metrics = dict(reference_num_clicks=int(subset.size))
        if subset.size:
            metrics['reference_mIoU'] = float(subset.mean())
            for thr in self.iou_thrs:
                metrics[f'reference_NoC@{thr}'] = float(
                    np.where(subset >= thr, 1, self.max_clicks).mean())
        return metrics
