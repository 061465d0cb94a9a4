"""How far an approximate mode (int8, bf16) moves the model's outputs from
fp32: per photo (instances kept, mask IoU of matched instances, panoptic
pixels with the same class, prompt mask IoU) and on a labelled dataset
(any test config's metric: PQ, click mIoU ...), each computed through
:class:`rap_sam.apis.RapSAMPredictor`, the way a user runs the model."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from scipy.optimize import linear_sum_assignment


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``[N, M]`` IoU of bool masks ``a`` ``[N, H, W]`` and ``b``
    ``[M, H, W]``."""
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


def match_instances(ref, test, iou_thr: float = 0.5) -> dict:
    """Match ``test``'s instances to ``ref``'s (``InstanceData`` with
    ``masks`` and ``labels``), one to one, by mask IoU (Hungarian).

    Returns:
        dict: ``ref`` and ``test`` counts; ``kept``, the ``ref`` instances
        matched at IoU >= ``iou_thr`` with the same label; ``mean_iou`` and
        ``min_iou`` over those (1.0 when there are none).
    """
    n, m = len(ref), len(test)
    kept_ious = []
    if n and m:
        ious = mask_iou_matrix(ref.masks.cpu(), test.masks.cpu())
        rows, cols = linear_sum_assignment(-ious)
        same = (
            ref.labels.cpu().numpy()[rows] == test.labels.cpu().numpy()[cols])
        good = (ious[rows, cols] >= iou_thr) & same
        kept_ious = ious[rows, cols][good].tolist()
    return dict(
        ref=n,
        test=m,
        kept=len(kept_ious),
        mean_iou=float(np.mean(kept_ious)) if kept_ious else 1.0,
        min_iou=float(np.min(kept_ious)) if kept_ious else 1.0)


def panoptic_class_agreement(ref_seg: torch.Tensor,
                             test_seg: torch.Tensor) -> float:
    """The fraction of pixels whose panoptic class (the id modulo
    ``INSTANCE_OFFSET``; instance ids differ between runs) is the same."""
    ref_cls = ref_seg.cpu() % INSTANCE_OFFSET
    test_cls = test_seg.cpu() % INSTANCE_OFFSET
    return float((ref_cls == test_cls).float().mean())


def grid_clicks(width: int, height: int, grid: int = 4) -> np.ndarray:
    """``[grid * grid, 2]`` clicks (x, y) at the centres of a regular grid
    over a ``width x height`` image."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def panoptic_segments(pan_seg: torch.Tensor, num_classes: int):
    """The segments of a panoptic map ``[H, W]`` (``label + id *
    INSTANCE_OFFSET``; ``num_classes`` is void) as ``InstanceData`` with
    ``masks`` and ``labels``."""
    from mmengine.structures import InstanceData
    pan_seg = pan_seg.cpu()
    ids = [
        i for i in torch.unique(pan_seg).tolist()
        if i % INSTANCE_OFFSET != num_classes
    ]
    masks = torch.stack([pan_seg == i for i in ids]) if ids else \
        torch.zeros((0, ) + tuple(pan_seg.shape), dtype=torch.bool)
    labels = torch.tensor([i % INSTANCE_OFFSET for i in ids], dtype=torch.long)
    return InstanceData(masks=masks, labels=labels)


def compare_on_photo(ref_predictor,
                     test_predictor,
                     img: np.ndarray,
                     grid: int = 4,
                     iou_thr: float = 0.5,
                     score_thr: float = 0.5) -> dict:
    """One photo through both predictors.

    Returns:
        dict: ``segments``: :func:`match_instances` of the panoptic
        segments (things and stuff, what a user sees); ``instances``: of
        the thing instances scoring >= ``score_thr`` in ``ref``, each
        looked for among all of ``test``'s (so a score moving across the
        threshold does not count as lost); ``panoptic_agreement``;
        ``click_mean_iou`` / ``click_min_iou``: IoU of each of ``grid x
        grid`` clicks' masks in the two.
    """
    ref = ref_predictor.segment_image(img)
    test = test_predictor.segment_image(img)
    num_classes = len(ref_predictor.class_names)
    result = dict(
        segments=match_instances(
            panoptic_segments(ref.pred_panoptic_seg.sem_seg[0], num_classes),
            panoptic_segments(test.pred_panoptic_seg.sem_seg[0], num_classes),
            iou_thr))
    confident = ref.pred_instances[ref.pred_instances.scores >= score_thr]
    result['instances'] = match_instances(confident, test.pred_instances,
                                          iou_thr)
    result['panoptic_agreement'] = panoptic_class_agreement(
        ref.pred_panoptic_seg.sem_seg[0], test.pred_panoptic_seg.sem_seg[0])
    clicks = grid_clicks(img.shape[1], img.shape[0], grid)
    masks = []
    for predictor in (ref_predictor, test_predictor):
        predictor.set_image(img)
        masks.append(
            predictor.predict_prompts(
                points=clicks).pred_instances.masks.cpu())
    ious = np.diag(mask_iou_matrix(*masks))
    # Two empty masks agree perfectly.
    empty = (masks[0].flatten(1).sum(1) == 0) & (
        masks[1].flatten(1).sum(1) == 0)
    ious = np.where(empty.numpy(), 1.0, ious)
    result.update(
        click_mean_iou=float(ious.mean()), click_min_iou=float(ious.min()))
    return result


def evaluate_predictor(predictor,
                       cfg,
                       max_images: Optional[int] = None) -> Dict[str, float]:
    """``cfg``'s test metric (its ``test_dataloader`` and
    ``test_evaluator``) with ``predictor`` making the predictions: panoptic
    images through :meth:`segment_image`, prompt samples
    (``gt_instances_collected``) through :meth:`set_image` and
    :meth:`predict_prompts`, from the original image file, as a user
    would. With the torch predictor this gives tools/test.py's figures.

    Args:
        max_images (int, optional): Evaluate the first ones only.
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    dataloader_cfg = cfg.test_dataloader.copy()
    dataloader_cfg.update(num_workers=0, persistent_workers=False)
    dataloader = Runner.build_dataloader(dataloader_cfg)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    count = 0
    for batch in dataloader:
        for sample in batch['data_samples']:
            _predict_into(predictor, sample)
        evaluator.process(data_samples=batch['data_samples'], data_batch=batch)
        count += len(batch['data_samples'])
        if max_images is not None and count >= max_images:
            break
    return evaluator.evaluate(count)


def _predict_into(predictor, sample) -> None:
    img = predictor.read_image(sample.img_path)
    if 'gt_instances_collected' not in sample:
        result = predictor.segment_image(img)
        for key in ('pred_panoptic_seg', 'pred_instances'):
            if key in result:
                sample.set_field(result.get(key), key)
        return
    prompts = sample.gt_instances_collected
    # The dataset's prompts are in resized pixels; the predictor takes the
    # original image's (and resizes them back to the same boxes).
    sx, sy = sample.metainfo['scale_factor'][:2]
    boxes = prompts.point_coords.cpu().numpy() / np.array([sx, sy, sx, sy])
    is_box = prompts.is_box.cpu().numpy().astype(bool)
    order = np.concatenate([np.flatnonzero(~is_box), np.flatnonzero(is_box)])
    clicks = (boxes[~is_box, :2] + boxes[~is_box, 2:]) / 2
    predictor.set_image(img)
    if len(order):
        result = predictor.predict_prompts(
            points=clicks if len(clicks) else None,
            boxes=boxes[is_box] if is_box.any() else None)
        pred = result.pred_instances
        # Back to the dataset's prompt order (the predictor puts points
        # first).
        masks = torch.empty_like(pred.masks)
        masks[torch.from_numpy(order)] = pred.masks
    else:
        h, w = img.shape[:2]
        masks = torch.zeros((0, h, w), dtype=torch.bool)
    sample.pred_instances = _instances(masks=masks)


def _instances(**fields):
    from mmengine.structures import InstanceData
    return InstanceData(**fields)


def _summarize_matches(matches: Sequence[dict]) -> dict:
    ref = sum(m['ref'] for m in matches)
    kept = sum(m['kept'] for m in matches)
    return dict(
        ref=ref,
        test=sum(m['test'] for m in matches),
        kept=kept,
        kept_fraction=kept / ref if ref else 1.0,
        # Averaged per matched instance, not per photo.
        mean_iou=float(
            np.average([m['mean_iou'] for m in matches],
                       weights=[m['kept'] for m in matches])) if kept else 1.0,
        min_iou=min(m['min_iou'] for m in matches))


def summarize_photos(results: Sequence[dict]) -> dict:
    """Totals over :func:`compare_on_photo` results."""
    return dict(
        photos=len(results),
        segments=_summarize_matches([r['segments'] for r in results]),
        instances=_summarize_matches([r['instances'] for r in results]),
        panoptic_agreement=float(
            np.mean([r['panoptic_agreement'] for r in results])),
        click_mean_iou=float(np.mean([r['click_mean_iou'] for r in results])),
        click_min_iou=min(r['click_min_iou'] for r in results))


def photo_table(rows: List[dict]) -> str:
    """A markdown table of :func:`summarize_photos` rows (each with a
    ``mode`` key)."""
    lines = [
        '| mode | photos | panoptic segments kept | their mask IoU mean / '
        'min | confident instances kept | their mask IoU mean / min | '
        'pixels of the same class | click mask IoU mean / min |',
        '|---|---|---|---|---|---|---|---|'
    ]

    def kept(m):
        return (f"{m['kept']} / {m['ref']} ({100 * m['kept_fraction']:.1f} "
                f"%) | {m['mean_iou']:.4f} / {m['min_iou']:.4f}")

    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['photos']} | {kept(r['segments'])} | "
            f"{kept(r['instances'])} | "
            f"{100 * r['panoptic_agreement']:.2f} % | "
            f"{r['click_mean_iou']:.4f} / {r['click_min_iou']:.4f} |")
    return '\n'.join(lines)
