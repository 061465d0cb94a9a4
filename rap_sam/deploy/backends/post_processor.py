"""The torch model's post-processing, for outputs of exported graphs.

The one module of this package that imports torch (the package's
``__init__`` does not import it): the decoders' logits at feature
resolution become masks at the image's size through the model's own code,
so every backend's results are made exactly as the torch model's are.
"""
from typing import Optional, Sequence

from mmdet.models.detectors import MaskFormer

from rap_sam.models.detectors import RapSAM
from rap_sam.models.seg_heads import ScoredPanopticFusionHead


class RapSAMPostProcessor:
    """RAP-SAM's post-processing without the network: the panoptic fusion
    head (:class:`ScoredPanopticFusionHead`) and the detector's methods
    that turn head outputs into ``DetDataSample`` results, the same
    functions as :class:`RapSAM`'s (not copies).

    It stands in for the model in :class:`rap_sam.apis.RapSAMPredictor`
    on a runtime backend: ``predictor.model.panoptic_fusion_head.test_cfg``
    sets thresholds as for the torch model.

    Args:
        num_things_classes (int): Thing classes (the first ones).
        num_stuff_classes (int): Stuff classes.
        test_cfg (dict): The model's ``test_cfg`` (``panoptic_on``,
            ``instance_on``, ``object_mask_thr``, ``iou_thr``,
            ``max_per_image``, ``filter_low_score``), which is the fusion
            head's.
    """

    # RapSAM's own functions: the same code for every backend.
    add_pred_to_datasample = MaskFormer.add_pred_to_datasample
    add_prompt_preds = RapSAM.add_prompt_preds

    def __init__(self,
                 num_things_classes: int,
                 num_stuff_classes: int,
                 test_cfg: Optional[dict] = None):
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.test_cfg = dict(test_cfg or {})
        # The class itself, not a registry name: a registry build looks the
        # name up in the caller's default scope, which another library
        # (an mmengine Runner) may have set to one without it.
        self.panoptic_fusion_head = ScoredPanopticFusionHead(
            num_things_classes=num_things_classes,
            num_stuff_classes=num_stuff_classes,
            test_cfg=self.test_cfg)

    @classmethod
    def from_model(cls, model) -> 'RapSAMPostProcessor':
        """The post-processing of a built RAP-SAM model (its classes and
        its fusion head's ``test_cfg``, copied)."""
        head = model.panoptic_fusion_head
        return cls(head.num_things_classes, head.num_stuff_classes,
                   dict(head.test_cfg))

    def panoptic(self, cls_logits, mask_logits, samples: Sequence):
        """``[B, Q, K + 1]`` class and ``[B, Q, h, w]`` mask logits ->
        ``samples`` with ``pred_panoptic_seg`` / ``pred_instances`` at
        their original size (RapSAM.predict_from_feats' image branch)."""
        results = self.panoptic_fusion_head.predict(
            cls_logits, mask_logits, samples, rescale=True)
        return self.add_pred_to_datasample(samples, results)

    def prompts(self, cls_logits, mask_logits, ious, samples: Sequence):
        """Prompt logits -> ``samples`` with one binary mask per prompt
        (RapSAM.predict_from_feats' prompt branch)."""
        return self.add_prompt_preds(cls_logits, mask_logits, ious, samples,
                                     True)
