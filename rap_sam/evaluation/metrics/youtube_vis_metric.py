import types

import numpy
from mmdet.evaluation import YouTubeVISMetric
from mmdet.evaluation.functional import ytviseval
from mmdet.registry import METRICS
from mmdet.structures.mask import encode_mask_results


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy plus the ``np.float`` alias that NumPy 1.24 removed."""
    float = float

    def __getattr__(self, name):
        return getattr(numpy, name)


def patch_ytviseval_numpy() -> None:
    """mmdet 3.3's ``YTVISeval.accumulate`` calls ``np.float`` and fails on
    NumPy >= 1.24 whenever AP is computed; give that one module an ``np``
    that still has the alias (numpy itself stays untouched)."""
    if not hasattr(numpy, 'float') and \
            not isinstance(ytviseval.np, _NumpyWithFloatAlias):
        ytviseval.np = _NumpyWithFloatAlias('numpy')


@METRICS.register_module()
class YouTubeVISMetricCompat(YouTubeVISMetric):
    """mmdet's ``YouTubeVISMetric`` (same arguments, keys and files) whose
    AP computation also runs on NumPy >= 1.24, and which also takes masks
    that the model already encoded as COCO RLEs (``test_cfg.rle_masks``,
    which keeps long videos in bounded memory)."""

    def process_video(self, data_samples):
        """One video's predictions and ground truth, as mmdet's metric
        gathers them, with masks encoded here unless they already are."""
        preds, gts = [], []
        for frame_id, frame in enumerate(data_samples):
            pred = frame.pred_track_instances
            masks = pred.masks
            if not isinstance(masks, list):
                masks = encode_mask_results(masks.detach().cpu().numpy())
            preds.append(
                dict(
                    img_id=frame.img_id,
                    bboxes=pred.bboxes.cpu().numpy(),
                    scores=pred.scores.cpu().numpy(),
                    labels=pred.labels.cpu().numpy(),
                    instances_id=pred.instances_id.cpu().numpy(),
                    masks=masks))
            height, width = frame.ori_shape[:2]
            gts.append(
                dict(
                    width=width,
                    height=height,
                    img_id=frame.img_id,
                    frame_id=frame_id,
                    video_id=frame.video_id,
                    video_length=len(data_samples),
                    anns=frame.get('instances', dict())))
        # gts first: formatting them fills the video meta that preds use
        gt_results = self._format_one_video_gts(gts)
        pred_results = self._format_one_video_preds(preds)
        self.results.append((pred_results, gt_results))

    def compute_metrics(self, results: list) -> dict:
        if not self.format_only:
            patch_ytviseval_numpy()
        return super().compute_metrics(results)
