import contextlib
import logging
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors import MaskFormer
from mmdet.registry import MODELS
from mmdet.structures import SampleList, TrackDataSample
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from rap_sam.engine import check_losses_finite
from rap_sam.visualization import config_dataset_meta, meta_fits
from ..seg_heads import ScoredPanopticFusionHead
from ..utils.autocast_weights import cast_autocast_weights
from ..utils.fold_batch_norm import fold_batch_norms
from ..utils.mask_rles import encode_mask_rles

#: Inference precisions and the autocast dtype each runs backbone, neck and
#: head in (``None``: no autocast).
AUTOCAST_DTYPES = {
    'fp32': None,
    'bf16': torch.bfloat16,
    'fp16': torch.float16,
}


def _to_float(x):
    if isinstance(x, Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float(v) for v in x)
    return x


@MODELS.register_module()
class RapSAM(MaskFormer):
    """RAP-SAM: one model for panoptic segmentation, video instance
    segmentation and click / box prompts.

    What ``predict`` returns depends on the samples:

    - ``DetDataSample``: ``pred_panoptic_seg`` and ``pred_instances``
      (per ``test_cfg.panoptic_on`` / ``instance_on``);
    - ``DetDataSample`` with ``gt_instances_collected`` (prompts as boxes in
      ``point_coords``): ``pred_instances`` with one mask per prompt, its
      ``iou_scores`` and a class (``labels``, ``scores``);
    - ``TrackDataSample`` (one clip): ``pred_track_instances`` per frame, a
      query being one track through the clip; with ``test_cfg.rle_masks``
      their masks are COCO RLEs instead of full-size arrays.

    Inference settings (set by :func:`rap_sam.deploy.prepare` through
    :meth:`switch_to_deploy`): :attr:`precision` (``'fp32'``, or
    ``'bf16'`` / ``'fp16'``: backbone, neck and head run under
    ``torch.autocast``, the head's outputs come back as fp32 so the
    post-processing stays fp32) and :attr:`channels_last` (the input is
    made channels-last for the backbone).
    """

    precision = 'fp32'
    channels_last = False

    @property
    def dataset_meta(self) -> dict:
        """Names (``classes``) and colours (``palette``) of the classes
        this model predicts.

        mmdet's ``init_detector`` and ``DetInferencer`` set it from the
        checkpoint's ``meta`` or, when the checkpoint has none, to COCO's 80
        detection classes; a checkpoint of joint training carries the joint
        classes. A meta that does not name :attr:`num_classes` classes does
        not describe this model's labels (mmdet would draw with the wrong
        names, run out of colours and take a real class for the void
        label), so it is replaced by the names and colours of the config's
        test dataset (``self.cfg``, which both tools set), else by generic
        ones.
        """
        meta = self.__dict__.get('_dataset_meta')
        if meta is None:
            raise AttributeError('dataset_meta')
        if meta_fits(meta, self.num_classes):
            return meta
        cfg = self.__dict__.get('cfg')
        fitted = config_dataset_meta(cfg, self.num_classes,
                                     self.num_things_classes)
        if cfg is not None:
            # Kept, so that what a caller changes in it (a palette) stays.
            self.__dict__['_dataset_meta'] = fitted
            print_log(
                f'dataset_meta names {len(meta.get("classes") or ())} '
                f'classes but the model predicts {self.num_classes}: using '
                f'the classes of the config\'s test dataset.',
                logger='current',
                level=logging.WARNING)
        return fitted

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self.__dict__['_dataset_meta'] = meta

    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        """Images ``[B, 3, H, W]`` or clips ``[B, T, 3, H, W]`` -> the neck's
        stride-4 map ``[B * T, C, H/4, W/4]``."""
        if batch_inputs.dim() == 5:
            batch_inputs = batch_inputs.flatten(0, 1)
        if batch_inputs.dim() != 4 or batch_inputs.size(1) != 3:
            raise ValueError(
                'RAP-SAM takes 3-channel images [B, 3, H, W] (or clips '
                f'[B, T, 3, H, W]); got a tensor of shape '
                f'{tuple(batch_inputs.shape)}. Convert grayscale or RGBA '
                'images to 3-channel colour first.')
        if self.channels_last:
            batch_inputs = batch_inputs.contiguous(
                memory_format=torch.channels_last)
        with self._autocast(batch_inputs.device.type):
            return self.neck(self.backbone(batch_inputs))

    def _autocast(self, device_type: str):
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=dtype)

    def predict_head(self, feats, samples: SampleList) -> Tuple:
        """``panoptic_head.predict`` in :attr:`precision`, its outputs in
        fp32."""
        with self._autocast(feats.device.type):
            outputs = self.panoptic_head.predict(feats, samples)
        return outputs if self.precision == 'fp32' else _to_float(outputs)

    def switch_to_deploy(self,
                         low_rank_output: bool = True,
                         channels_last: bool = True,
                         precision: str = 'fp32') -> None:
        """The exact inference conversions, in place (eval mode): BNs
        folded into the convs before them (mmdet's ResNet by
        :func:`rap_sam.models.utils.fold_batch_norms`, the neck by its own
        :meth:`switch_to_deploy`), the neck's low-rank output and
        channels-last memory on request; then :attr:`precision` (bf16 /
        fp16: the layers autocast runs in it keep their weights in it,
        :func:`rap_sam.models.utils.cast_autocast_weights`). Use
        :func:`rap_sam.deploy.prepare`, which checks its arguments and
        that a model is converted once."""
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f'precision must be one of '
                             f'{sorted(AUTOCAST_DTYPES)}, got {precision!r}')
        if self.training:
            raise RuntimeError('switch_to_deploy folds running statistics: '
                               'call eval() first')
        fold_batch_norms(self.backbone)
        self.neck.switch_to_deploy(low_rank_output)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.precision = precision
        if AUTOCAST_DTYPES[precision] is not None:
            cast_autocast_weights(self, AUTOCAST_DTYPES[precision])

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> dict:
        """Losses of a batch of one kind: panoptic images or clips (object
        queries) or prompt samples. Samples from :class:`ConcatOVDataset`
        carry a source tag (``metainfo['data_tag']``), which prefixes the
        loss names (``'sam.loss_mask'``) so each source's losses are logged
        apart; a NaN or infinite loss stops training here, naming the
        iteration and the source, before it can reach the weights."""
        tags = {s.metainfo.get('data_tag') for s in batch_data_samples}
        if len(tags) > 1:
            raise ValueError(
                f'A training batch mixes sources {sorted(map(str, tags))}; '
                'batch with SourceAspectRatioBatchSampler so that each batch '
                'comes from one source.')
        tag = tags.pop()
        losses = self.panoptic_head.loss(
            self.extract_feat(batch_inputs), batch_data_samples)
        if tag is not None:
            losses = {f'{tag}.{k}': v for k, v in losses.items()}
        check_losses_finite(losses, tag
                            or self._batch_kind(batch_data_samples),
                            batch_data_samples)
        return losses

    def _batch_kind(self, samples: SampleList) -> str:
        if isinstance(samples[0], TrackDataSample):
            return 'clip'
        return 'prompt' if self.panoptic_head.is_prompt_batch(
            samples) else 'image'

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList) -> Tuple:
        """Raw head outputs: lists of class scores, mask logits and IoU
        predictions (stages, then the adapter), and the final queries (fp32
        whatever :attr:`precision`)."""
        feats = self.extract_feat(batch_inputs)
        with self._autocast(batch_inputs.device.type):
            outputs = self.panoptic_head(feats, batch_data_samples)
        return outputs if self.precision == 'fp32' else _to_float(outputs)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        return self.predict_from_feats(
            self.extract_feat(batch_inputs), batch_data_samples, rescale)

    def predict_from_feats(self,
                           feats: Tensor,
                           batch_data_samples: SampleList,
                           rescale: bool = True) -> SampleList:
        """``predict`` on features from :meth:`extract_feat`, so prompts on
        one image can reuse them."""
        head = self.panoptic_head
        if isinstance(batch_data_samples[0], TrackDataSample):
            cls_scores, masks, ious, _ = self._clip_outputs(
                feats, batch_data_samples)
            return self.predict_frames(cls_scores, masks, ious,
                                       batch_data_samples, rescale)
        if head.is_prompt_batch(batch_data_samples):
            if all(
                    len(s.gt_instances_collected) == 0
                    for s in batch_data_samples):
                return self.add_empty_prompt_preds(batch_data_samples,
                                                   feats.device, rescale)
            cls_scores, masks, ious, _ = self.predict_head(
                feats, batch_data_samples)
            return self.add_prompt_preds(cls_scores, masks, ious,
                                         batch_data_samples, rescale)
        cls_scores, masks, ious, _ = self.predict_head(feats,
                                                       batch_data_samples)
        results = self.panoptic_fusion_head.predict(
            cls_scores, masks, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _clip_outputs(self, feats: Tensor, samples: SampleList):
        """The adapter's outputs for a clip, masks at feature resolution."""
        return self.predict_head(feats, samples)

    def add_prompt_preds(self, cls_scores: Tensor, masks: Tensor, ious: Tensor,
                         samples: SampleList, rescale: bool) -> SampleList:
        """One binary mask per prompt, in prompt order: the logits resized
        to the padded input, cropped to the image and (``rescale``) resized
        to ``ori_shape``, then ``> 0``
        (:meth:`ScoredPanopticFusionHead.binary_masks`: on each mask's
        window where that gives the same bits)."""
        scores, labels = F.softmax(cls_scores, dim=-1)[..., :-1].max(-1)
        head = self.panoptic_fusion_head
        for i, sample in enumerate(samples):
            meta = sample.metainfo
            if isinstance(head, ScoredPanopticFusionHead):
                binary = head.binary_masks(masks[i], meta, rescale)
            else:  # mmdet's head (the reference): the full-size calls
                binary = ScoredPanopticFusionHead.resized_logits(
                    masks[i], meta, rescale) > 0
            sample.pred_instances = InstanceData(
                masks=binary,
                iou_scores=ious[i, :, 0],
                labels=labels[i],
                scores=scores[i])
        return samples

    @staticmethod
    def add_empty_prompt_preds(samples: SampleList, device,
                               rescale: bool) -> SampleList:
        """Samples without prompts (e.g. every segment vanished in the
        resize) get empty predictions rather than an error."""
        for sample in samples:
            key = 'ori_shape' if rescale else 'img_shape'
            h, w = sample.metainfo[key][:2]
            sample.pred_instances = InstanceData(
                masks=torch.zeros((0, h, w), dtype=torch.bool, device=device),
                iou_scores=torch.zeros(0, device=device),
                labels=torch.zeros(0, dtype=torch.long, device=device),
                scores=torch.zeros(0, device=device))
        return samples

    def predict_frames(self, cls_scores: Tensor, masks: Tensor, ious: Tensor,
                       samples: List[TrackDataSample],
                       rescale: bool) -> SampleList:
        """Per-frame results of clips whose queries are tracks.

        Args:
            cls_scores (Tensor): ``[B, N, K + 1]``, shared by all frames.
            masks (Tensor): ``[B, N, T, h, w]`` logits at feature resolution,
                upsampled by the fusion head one frame at a time to bound
                memory.
            ious (Tensor): ``[B, N, 1]``.
        """
        for t in range(masks.size(2)):
            frame_samples = [s[t] for s in samples]
            results = self.panoptic_fusion_head.predict(
                cls_scores,
                masks[:, :, t].to(cls_scores.device),
                frame_samples,
                rescale=rescale)
            for sample, result in zip(frame_samples, results):
                if 'pan_results' in result:
                    sample.pred_track_panoptic_seg = result['pan_results']
                if 'ins_results' in result:
                    instances = result['ins_results']
                    # Instance ranking depends on the clip-level classes only,
                    # so rank r is the same track in every frame.
                    instances.instances_id = torch.arange(
                        len(instances), device=instances.labels.device) + 1
                    if self.test_cfg.get('rle_masks', False):
                        # Full-size masks of every frame of a long video
                        # would not fit in memory; their RLEs do.
                        instances.masks = encode_mask_rles(instances.masks)
                    sample.pred_track_instances = instances
        return samples
