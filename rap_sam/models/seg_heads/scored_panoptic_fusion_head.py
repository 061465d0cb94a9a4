import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads import MaskFormerFusionHead
from mmdet.registry import MODELS
from mmengine.structures import PixelData
from torch import Tensor


@MODELS.register_module()
class ScoredPanopticFusionHead(MaskFormerFusionHead):
    """mmdet's MaskFormer fusion, plus the score and class of every panoptic
    segment (``pred_panoptic_seg.segments``), which the demo and API report.

    The panoptic map itself is mmdet's, unchanged. A segment's score is that
    of the query that painted it (the best one, for merged stuff).
    """

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
