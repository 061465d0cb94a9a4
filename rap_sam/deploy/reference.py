"""The reference variant of RAP-SAM, defined once.

'Reference' is the computation the reference code does, which the fast
paths must reproduce (to float rounding) and the benchmark times them
against:

- the deformable convs run mmcv's kernel on every device (``dcn_impl =
  'mmcv'``);
- BatchNorms stay layers, the neck hands the head its dense output map,
  tensors stay NCHW (the model as built; nothing is folded or switched);
- the post-processing upsamples every query's mask logits to the padded
  input size, then runs mmdet's ``MaskFormerFusionHead`` as it is
  (:class:`ReferenceFusionHead`), where the model's
  ``ScoredPanopticFusionHead`` resizes only the masks it reads. A video
  model (``RapSAMVideo``) keeps its fusion head: its clip linker reads the
  masks per query through that head's own methods, and there is no other
  form of it to compare with.

``rap_sam.deploy.prepare(model, 'reference')`` applies it; the tests of the
fast paths compare against it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads import MaskFormerFusionHead
from mmengine.structures import PixelData
from torch import Tensor

from rap_sam.models.detectors import RapSAMVideo


class ReferenceFusionHead(MaskFormerFusionHead):
    """Every mask to the padded input size, then mmdet's fusion.

    Args:
        segments (bool): Also attach the segment table
            (``pred_panoptic_seg.segments``: id, label, isthing, score,
            area) that ``ScoredPanopticFusionHead`` reports, computed the
            straightforward way (one full-size argmax and a pass per
            segment), so its results can be compared whole. The reference
            code has no such table, so :func:`to_reference` leaves it off
            and the benchmark does not time it.
        *args, **kwargs: ``MaskFormerFusionHead``'s.
    """

    def __init__(self, *args, segments: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.segments = segments

    @classmethod
    def from_head(cls,
                  head: MaskFormerFusionHead,
                  segments: bool = False) -> 'ReferenceFusionHead':
        """The reference twin of a fusion head (same classes and
        ``test_cfg``)."""
        return cls(
            num_things_classes=head.num_things_classes,
            num_stuff_classes=head.num_stuff_classes,
            test_cfg=head.test_cfg,
            segments=segments)

    def predict(self,
                mask_cls,
                mask_pred,
                batch_data_samples,
                rescale=False,
                **kwargs):
        size = batch_data_samples[0].metainfo['batch_input_shape']
        if tuple(mask_pred.shape[-2:]) != tuple(size):
            mask_pred = F.interpolate(
                mask_pred, size=size, mode='bilinear', align_corners=False)
        return super().predict(mask_cls, mask_pred, batch_data_samples,
                               rescale, **kwargs)

    def panoptic_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> PixelData:
        result = super().panoptic_postprocess(mask_cls, mask_pred)
        if not self.segments:
            return result
        panoptic = result.sem_seg[0]
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = labels.ne(self.num_classes) & (
            scores > self.test_cfg.get('object_mask_thr', 0.8))
        segments = []
        if keep.any():
            kept_scores = scores[keep]
            # The query that painted each pixel, as mmdet's argmax picks it.
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


def to_reference(model: nn.Module) -> nn.Module:
    """Make a RAP-SAM model (as built: nothing folded) compute what the
    reference code computes; in place, returns it. Use
    ``rap_sam.deploy.prepare(model, 'reference')``, which checks the model
    first."""
    model.eval()
    model.neck.dcn_impl = 'mmcv'
    if not isinstance(model, RapSAMVideo):
        model.panoptic_fusion_head = ReferenceFusionHead.from_head(
            model.panoptic_fusion_head)
    return model
