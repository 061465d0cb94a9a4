"""Training losses of :class:`RapSAMHead` (kept apart from its inference)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import TASK_UTILS
from mmdet.structures import SampleList, TrackDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.dist import is_distributed
from mmengine.structures import InstanceData
from torch import Tensor


def _mask_tensor(masks, shape: Tuple[int, int], device) -> Tensor:
    """Bool ``[M, H, W]`` masks, zero-padded to the batch input ``shape``."""
    masks = masks if isinstance(masks, Tensor) else masks.to_tensor(
        torch.bool, device)
    masks = masks.to(device=device, dtype=torch.bool)
    pad_h, pad_w = shape[0] - masks.shape[-2], shape[1] - masks.shape[-1]
    if pad_h or pad_w:
        masks = F.pad(masks, (0, pad_w, 0, pad_h))
    return masks


class RapSAMHeadLossMixin:
    """Losses of the recipe (see ``docs/training.md``).

    Object queries (panoptic images, or clips where a query is a mask tube):
    Hungarian matching on point-sampled costs, class cross-entropy with a
    down-weighted background, mask BCE + dice on importance-sampled points,
    for every stage and the adapter. Prompt queries: each is supervised by
    the segment it was drawn from, with the same mask losses; optionally
    (``train_cfg.iou_loss_weight > 0``) the prompt IoU head learns the IoU
    of its predicted mask, as in SAM, so prompt masks can be ranked;
    optionally (``train_cfg.prompt_cls_weight > 0``) prompt queries also
    learn the class of their segment, at every stage.

    The object adapter refines each query by pooling under that query's
    last-stage mask. Matched on its own (``adapter_matching='own'``, as mmdet
    matches every decoder output), it may learn to predict, from query q,
    another object than q's last-stage mask: nothing ties the two orders,
    and a from-scratch model can settle there (measured on the toy recipe:
    same-query mask IoU 0.01 between adapter and last stage, and its classes
    never become confident). ``'last_stage'`` gives the adapter the last
    stage's assignment, so each query keeps its object.

    ``train_cfg`` keys: ``assigner``, ``sampler``, ``num_points`` (12544),
    ``oversample_ratio`` (3.0), ``importance_sample_ratio`` (0.75),
    ``iou_loss_weight`` (0: off, as the reference), ``prompt_box_noise``
    (0.004: prompt boxes jitter by up to this fraction of their size),
    ``prompt_cls_weight`` (0: off, as the reference; else ``loss_cls`` of
    the prompt queries, scaled by it), ``adapter_matching`` ('own' or
    'last_stage').
    """

    def init_training(self, train_cfg: Optional[dict]) -> None:
        cfg = dict(train_cfg or {})
        self.assigner = TASK_UTILS.build(
            cfg['assigner']) if 'assigner' in cfg else None
        self.sampler = TASK_UTILS.build(
            cfg['sampler'], default_args=dict(
                context=self)) if 'sampler' in cfg else None
        self.num_points = cfg.get('num_points', 12544)
        self.oversample_ratio = cfg.get('oversample_ratio', 3.0)
        self.importance_sample_ratio = cfg.get('importance_sample_ratio', 0.75)
        self.iou_loss_weight = cfg.get('iou_loss_weight', 0.0)
        self.prompt_box_noise = cfg.get('prompt_box_noise', 0.004)
        self.prompt_cls_weight = cfg.get('prompt_cls_weight', 0.0)
        self.adapter_matching = cfg.get('adapter_matching', 'own')
        if self.adapter_matching not in ('own', 'last_stage'):
            raise ValueError(
                "train_cfg.adapter_matching must be 'own' or 'last_stage', "
                f'got {self.adapter_matching!r}.')

    def loss(self, x: Tensor, batch_data_samples: SampleList) -> dict:
        """Losses of one batch: all prompt samples or all object samples
        (images or clips). Keys follow mmdet: ``d{i}.loss_*`` for stage i,
        ``loss_*`` for the adapter, ``loss_iou`` for the prompt IoU head."""
        if None in (self.loss_cls, self.loss_mask, self.loss_dice):
            raise ValueError('RapSAMHead needs loss_cls, loss_mask and '
                             'loss_dice to train.')
        is_clip = isinstance(batch_data_samples[0], TrackDataSample)
        if not is_clip and self.is_prompt_batch(batch_data_samples):
            losses = self.prompt_loss(x, batch_data_samples)
        else:
            losses = self.object_loss(x, batch_data_samples)
        # Under DDP every head parameter joins the graph (at zero weight):
        # a batch of one kind leaves the other kind's parameters unused,
        # which DDP would otherwise reject. Alone, it would only cost a few
        # hundred small ops per iteration.
        if is_distributed():
            touch = sum(p.sum() for p in self.parameters() if p.requires_grad)
            losses['loss_mask'] = losses['loss_mask'] + touch * 0.
        return losses

    # ------------------------------------------------------------------
    # object queries
    # ------------------------------------------------------------------
    def object_targets(self, sample) -> InstanceData:
        """``labels`` [M] and bool ``masks`` [M, H, W] of an image, or
        [M, T * H, W] tubes of a clip's tracks (frames stacked along H as
        the head stacks features; empty where a track is absent)."""
        if not isinstance(sample, TrackDataSample):
            shape = sample.metainfo['batch_input_shape']
            gt = sample.gt_instances
            return InstanceData(
                labels=gt.labels.long(),
                masks=_mask_tensor(gt.masks, shape, gt.labels.device))
        frames = [sample[t] for t in range(len(sample))]
        shape = frames[0].metainfo['batch_input_shape']
        device = frames[0].gt_instances.labels.device
        ids = torch.cat([f.gt_instances.instances_ids for f in frames])
        labels_all = torch.cat([f.gt_instances.labels for f in frames])
        track_ids, first = [], []
        for i, track in enumerate(ids.tolist()):
            if track not in track_ids:
                track_ids.append(track)
                first.append(i)
        tubes = torch.zeros((len(track_ids), len(frames), *shape),
                            dtype=torch.bool,
                            device=device)
        row = {track: k for k, track in enumerate(track_ids)}
        for t, frame in enumerate(frames):
            masks = _mask_tensor(frame.gt_instances.masks, shape, device)
            for track, mask in zip(frame.gt_instances.instances_ids.tolist(),
                                   masks):
                tubes[row[track], t] = mask
        return InstanceData(
            labels=labels_all[first].long().to(device),
            masks=tubes.flatten(1, 2))

    def object_loss(self, x: Tensor, samples: SampleList) -> dict:
        if self.assigner is None:
            raise ValueError('Object queries are matched to targets by '
                             'train_cfg.assigner (HungarianAssigner in the '
                             'recipe); the model has none.')
        targets = [self.object_targets(s) for s in samples]
        all_cls, all_masks, _, _ = self(x, samples)
        losses, matches = {}, None
        for i, (cls_scores, masks) in enumerate(zip(all_cls, all_masks)):
            if masks.dim() == 5:  # [B, N, T, h, w] -> frames stacked in H
                masks = masks.flatten(2, 3)
            is_adapter = i == len(all_cls) - 1
            prefix = '' if is_adapter else f'd{i}.'
            reuse = is_adapter and self.adapter_matching == 'last_stage'
            output_losses, matches = self.object_loss_single(
                cls_scores, masks, targets, matches if reuse else None)
            for key, value in output_losses.items():
                losses[prefix + key] = value
        return losses

    def assign(self, cls_scores: Tensor, masks: Tensor,
               target: InstanceData) -> Tuple[Tensor, Tensor]:
        """Hungarian matching of one sample's queries to its targets on
        costs at ``num_points`` random points. Returns matched query
        indices and their target indices."""
        points = torch.rand((1, self.num_points, 2), device=masks.device)
        pred_points = point_sample(masks[:, None],
                                   points.expand(len(masks), -1, -1))[:, 0]
        gt_points = point_sample(target.masks[:, None].float(),
                                 points.expand(len(target), -1, -1))[:, 0]
        assign_result = self.assigner.assign(
            pred_instances=InstanceData(scores=cls_scores, masks=pred_points),
            gt_instances=InstanceData(labels=target.labels, masks=gt_points))
        if self.sampler is not None:
            result = self.sampler.sample(
                assign_result, InstanceData(scores=cls_scores, masks=masks),
                target)
            return result.pos_inds, result.pos_assigned_gt_inds
        pos = torch.nonzero(assign_result.gt_inds > 0).squeeze(1)
        return pos, assign_result.gt_inds[pos] - 1

    def object_loss_single(
        self,
        cls_scores: Tensor,
        masks: Tensor,
        targets: List[InstanceData],
        matches: Optional[List[Tuple[Tensor, Tensor]]] = None
    ) -> Tuple[Dict[str, Tensor], List[Tuple[Tensor, Tensor]]]:
        """Losses of one output: ``cls_scores`` [B, N, K + 1], mask logits
        [B, N, h, w] (at a quarter of the targets' resolution). ``matches``
        (per sample: query indices, target indices) are computed from this
        output unless given; they are returned with the losses."""
        num_queries = cls_scores.size(1)
        labels, pos_preds, pos_targets = [], [], []
        if matches is None:
            with torch.no_grad():
                matches = [
                    self.assign(c.detach(), m.detach(), t)
                    for c, m, t in zip(cls_scores, masks, targets)
                ]
        for b, ((pos, gt_index), target) in enumerate(zip(matches, targets)):
            sample_labels = target.labels.new_full((num_queries, ),
                                                   self.num_classes)
            sample_labels[pos] = target.labels[gt_index]
            labels.append(sample_labels)
            pos_preds.append(masks[b][pos])
            pos_targets.append(target.masks[gt_index])
        labels = torch.stack(labels).flatten()
        class_weight = self.loss_cls.class_weight
        class_weight = cls_scores.new_tensor(
            class_weight) if class_weight is not None else \
            cls_scores.new_ones(self.num_classes + 1)
        loss_cls = self.loss_cls(
            cls_scores.flatten(0, 1),
            labels,
            avg_factor=class_weight[labels].sum())
        loss_mask, loss_dice = self.point_mask_losses(
            torch.cat(pos_preds), torch.cat(pos_targets))
        return dict(
            loss_cls=loss_cls, loss_mask=loss_mask,
            loss_dice=loss_dice), matches

    def point_mask_losses(self, preds: Tensor,
                          targets: Tensor) -> Tuple[Tensor, Tensor]:
        """BCE and dice of mask logits ``[M, h, w]`` against bool targets
        ``[M, H, W]`` at ``num_points`` points per mask, most of them where
        the prediction is uncertain; averaged over the masks of all ranks."""
        num_masks = reduce_mean(preds.new_tensor(float(len(preds))))
        num_masks = num_masks.clamp(min=1)
        if len(preds) == 0:
            zero = preds.sum() * 0.
            return zero, zero
        with torch.no_grad():
            points = get_uncertain_point_coords_with_randomness(
                preds[:, None].detach(), None, self.num_points,
                self.oversample_ratio, self.importance_sample_ratio)
            target_points = point_sample(targets[:, None].float(), points)[:,
                                                                           0]
        pred_points = point_sample(preds[:, None], points)[:, 0]
        loss_dice = self.loss_dice(
            pred_points, target_points, avg_factor=num_masks)
        loss_mask = self.loss_mask(
            pred_points.reshape(-1),
            target_points.reshape(-1),
            avg_factor=num_masks * self.num_points)
        return loss_mask, loss_dice

    # ------------------------------------------------------------------
    # prompt queries
    # ------------------------------------------------------------------
    def prompt_targets(self, samples: SampleList, device) -> Tensor:
        """Bool ``[B, Q, H, W]``: each query's segment (a prompt's mask
        tokens share it)."""
        targets = []
        for sample in samples:
            masks = sample.gt_instances.masks
            index = sample.gt_instances_collected.idx.long().cpu()
            masks = masks[index.to(masks.device)] if isinstance(
                masks, Tensor) else masks[index.numpy()]
            masks = _mask_tensor(masks, sample.metainfo['batch_input_shape'],
                                 device)
            targets.append(
                masks.repeat_interleave(self.num_mask_tokens, dim=0))
        return torch.stack(targets)

    def prompt_labels(self, samples: SampleList) -> Tensor:
        """Long ``[B, Q]``: the class of each query's segment."""
        labels = []
        for sample in samples:
            index = sample.gt_instances_collected.idx.long()
            gt_labels = sample.gt_instances.labels
            labels.append(gt_labels[index.to(
                gt_labels.device)].long().repeat_interleave(
                    self.num_mask_tokens))
        return torch.stack(labels)

    def jitter_prompts(self, samples: SampleList) -> None:
        """Training noise on the prompt boxes: centre and size move by up to
        ``prompt_box_noise`` of the box size (the reference's small noise),
        so the model does not rely on exact click geometry."""
        if self.prompt_box_noise <= 0:
            return
        for sample in samples:
            prompts = sample.gt_instances_collected
            boxes = bbox_xyxy_to_cxcywh(prompts.point_coords.float())
            size = boxes[:, 2:].repeat(1, 2)
            size[:, :2] /= 2
            noise = (torch.rand_like(boxes) * 2 - 1) * size
            prompts.point_coords = bbox_cxcywh_to_xyxy(boxes + noise *
                                                       self.prompt_box_noise)

    def prompt_loss(self, x: Tensor, samples: SampleList) -> dict:
        targets = self.prompt_targets(samples, x.device)
        self.jitter_prompts(samples)
        all_cls, all_masks, all_ious, _ = self(x, samples)
        losses = {}
        if self.prompt_cls_weight > 0:
            # The stages' scores; the last stage's are the prompt output
            # (the adapter repeats them), so it is named as the output.
            labels = self.prompt_labels(samples).to(x.device).flatten()
            stage_cls = all_cls[:-1]
            for i, cls_scores in enumerate(stage_cls):
                prefix = '' if i == len(stage_cls) - 1 else f'd{i}.'
                losses[prefix + 'loss_cls'] = self.prompt_cls_weight * \
                    self.loss_cls(cls_scores.flatten(0, 1), labels,
                                  avg_factor=len(labels))
        for i, masks in enumerate(all_masks):
            prefix = '' if i == len(all_masks) - 1 else f'd{i}.'
            loss_mask, loss_dice = self.point_mask_losses(
                masks.flatten(0, 1), targets.flatten(0, 1))
            losses[prefix + 'loss_mask'] = loss_mask
            losses[prefix + 'loss_dice'] = loss_dice
        if self.iou_loss_weight > 0:
            with torch.no_grad():
                ious = self.mask_ious(all_masks[-1].detach(), targets, samples)
            losses['loss_iou'] = self.iou_loss_weight * F.mse_loss(
                all_ious[-1][..., 0], ious)
        return losses

    @staticmethod
    def mask_ious(masks: Tensor, targets: Tensor,
                  samples: SampleList) -> Tensor:
        """IoU ``[B, Q]`` of each predicted mask as ``predict`` outputs it
        (logits upsampled to the input, > 0, inside the image) with its
        target."""
        ious = []
        for mask, target, sample in zip(masks, targets, samples):
            h, w = sample.metainfo['img_shape'][:2]
            pred = F.interpolate(
                mask[None],
                size=target.shape[-2:],
                mode='bilinear',
                align_corners=False)[0, :, :h, :w] > 0
            target = target[:, :h, :w]
            inter = (pred & target).flatten(1).sum(1)
            union = (pred | target).flatten(1).sum(1)
            ious.append(inter / union.clamp(min=1))
        return torch.stack(ious).float()
