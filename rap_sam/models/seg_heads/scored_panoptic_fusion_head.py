import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads import MaskFormerFusionHead
from mmdet.registry import MODELS
from mmengine.structures import PixelData
from torch import Tensor


@MODELS.register_module()
class ScoredPanopticFusionHead(MaskFormerFusionHead):
    """mmdet's MaskFormer fusion, taking mask logits at feature resolution,
    plus the score and class of every panoptic segment
    (``pred_panoptic_seg.segments``), which the demo and API report.

    Masks are upsampled to the padded input size here, as mmdet's heads do
    before fusion, then fused exactly as mmdet does. A segment's score is
    that of the query that painted it (the best one, for merged stuff).
    """

    def predict(self, mask_cls: Tensor, mask_pred: Tensor,
                batch_data_samples, rescale: bool = False, **kwargs):
        size = batch_data_samples[0].metainfo['batch_input_shape']
        if tuple(mask_pred.shape[-2:]) != tuple(size):
            mask_pred = F.interpolate(
                mask_pred, size=size, mode='bilinear', align_corners=False)
        return super().predict(mask_cls, mask_pred, batch_data_samples,
                               rescale, **kwargs)

    def panoptic_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> PixelData:
        result = super().panoptic_postprocess(mask_cls, mask_pred)
        panoptic = result.sem_seg[0]
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = labels.ne(self.num_classes) & (
            scores > self.test_cfg.get('object_mask_thr', 0.8))
        segments = []
        if keep.any():
            kept_scores = scores[keep]
            owner = (kept_scores[:, None, None] *
                     mask_pred[keep].sigmoid()).argmax(0)
            for segment_id in torch.unique(panoptic).tolist():
                label = segment_id % INSTANCE_OFFSET
                if label == self.num_classes:
                    continue
                region = panoptic == segment_id
                segments.append(
                    dict(
                        id=segment_id,
                        label=label,
                        isthing=label < self.num_things_classes,
                        score=kept_scores[owner[region]].max().item(),
                        area=int(region.sum().item())))
        result.set_metainfo(dict(segments=segments))
        return result
