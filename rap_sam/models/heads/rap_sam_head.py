import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.registry import MODELS
from mmdet.structures import SampleList, TrackDataSample
from mmdet.utils import OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from ..layers import (DecoderStage, FeatureMap, KernelUpdator,
                      OpenVocabClassifier, attend_to_feature_map, dense,
                      project, update_with_pooled)
from .rap_sam_head_loss import RapSAMHeadLossMixin

HeadOutputs = Tuple[List[Tensor], List[Tensor], List[Tensor], Tensor]


@MODELS.register_module()
class RapSAMHead(RapSAMHeadLossMixin, BaseModule):
    """The shared multitask decoder with its two adapters.

    Object queries (panoptic / video) and prompt queries (clicks and boxes)
    run through the same stages; the object adapter then refines object
    queries by pooling under their masks, and the prompt adapter lets prompt
    queries cross-attend to the whole feature map.

    Outputs, per stage and then the adapter (last): class scores
    ``[B, N, K + 1]``, mask logits ``[B, N, H, W]`` (``[B, N, T, H, W]`` for a
    clip of T frames) and IoU predictions ``[B, N, 1]``.

    Deliberately not an mmdet ``AnchorFreeHead``: its
    ``_load_from_state_dict`` renames ``*cls*`` keys of version-less state
    dicts, which would break loading ``panoptic_cls`` from plain files.

    Args:
        num_things_classes (int): Thing classes.
        num_stuff_classes (int): Stuff classes.
        num_queries (int): Learned object queries.
        feat_channels (int): Query and feature channels.
        num_stages (int): Shared decoder stages.
        num_mask_tokens (int): Queries per prompt.
        temperature (float): Stage class scores are divided by it (the
            adapter's are not, as in the released model).
        ov_classifier_name (str, optional): Class-embedding file name; None
            for random embeddings (tests, demos without weights).
        ov_classifier_dir (str, optional): Its directory.
        cls_embed_dims (int): Class-embedding dimension (CLIP text width).
        logit_scale (float): log of the multiplier of the classifier's
            cosine scores (4.6052, about log 100, in the released model).
        loss_cls, loss_mask, loss_dice (dict, optional): Losses for training.
        train_cfg, test_cfg (dict, optional): Passed by the detector; see
            :class:`RapSAMHeadLossMixin` for the training keys.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 num_queries: int = 100,
                 feat_channels: int = 256,
                 num_stages: int = 3,
                 num_mask_tokens: int = 1,
                 temperature: float = 0.1,
                 ov_classifier_name: Optional[str] = None,
                 ov_classifier_dir: Optional[str] = None,
                 cls_embed_dims: int = 768,
                 logit_scale: float = 4.6052,
                 loss_cls: OptConfigType = None,
                 loss_mask: OptConfigType = None,
                 loss_dice: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.num_queries = num_queries
        self.num_mask_tokens = num_mask_tokens
        self.temperature = temperature
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

        self.classifier = OpenVocabClassifier(self.num_classes,
                                              ov_classifier_name,
                                              ov_classifier_dir,
                                              cls_embed_dims, logit_scale)
        cls_embed_dims = self.classifier.embed_dims

        self.kernels = nn.Embedding(num_queries, feat_channels)
        self.mask_tokens = nn.Embedding(num_mask_tokens, feat_channels)
        # Entry 1 marks a prompt query; the released model uses it for
        # clicks and boxes alike.
        self.pb_embedding = nn.Embedding(2, feat_channels)
        self.pos_linear = nn.Linear(2 * feat_channels, feat_channels)
        # The box encoding's frequencies (mmdet's coordinate_to_encoding
        # computes them per call): 4 coordinates x num_feats sines /
        # cosines are the 2C inputs of pos_linear (mmdet's default 128 is
        # that for the released C = 256).
        num_feats = self.pos_linear.in_features // 4
        dim_t = torch.arange(num_feats, dtype=torch.float32)
        self.register_buffer(
            'pos_frequencies',
            10000**(2 * (dim_t // 2) / num_feats),
            persistent=False)
        self.mask_heads = nn.ModuleList(
            DecoderStage(feat_channels, cls_embed_dims)
            for _ in range(num_stages))

        self.panoptic_attn = KernelUpdator(feat_channels, feat_channels)
        self.panoptic_cls = nn.Sequential(
            nn.Linear(feat_channels, cls_embed_dims))
        self.prompt_attn = MultiheadAttention(
            embed_dims=feat_channels, num_heads=8, batch_first=True)
        self.prompt_norm = nn.LayerNorm(feat_channels)
        self.prompt_iou = nn.Linear(feat_channels, 1)

        self.loss_cls = MODELS.build(loss_cls) if loss_cls else None
        self.loss_mask = MODELS.build(loss_mask) if loss_mask else None
        self.loss_dice = MODELS.build(loss_dice) if loss_dice else None
        self.init_training(train_cfg)

    # ------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------
    @staticmethod
    def is_prompt_batch(batch_data_samples: SampleList) -> bool:
        """Whether the samples carry prompts (``gt_instances_collected``)."""
        flags = {'gt_instances_collected' in s for s in batch_data_samples}
        if len(flags) > 1:
            raise ValueError('A batch must be all prompt samples or none: '
                             'some samples carry gt_instances_collected and '
                             'some do not.')
        return flags.pop()

    def prompt_queries(self,
                       batch_data_samples: SampleList,
                       eps: float = 1e-5) -> Tensor:
        """Queries for the prompts of each sample, ``[B, N * T, C]`` for N
        prompts of T mask tokens (:meth:`prompt_attn_mask` keeps prompts
        from seeing each other).

        Each sample's ``gt_instances_collected.point_coords`` holds N boxes
        (x1, y1, x2, y2) in ``img_shape`` pixels (a click is its 6-px box);
        ``pb_labels`` picks the prompt-type embedding.
        """
        prompts = [s.gt_instances_collected for s in batch_data_samples]
        counts = {len(p) for p in prompts}
        if len(counts) > 1:
            raise ValueError('Every sample of a prompt batch needs the same '
                             f'number of prompts, got {sorted(counts)}.')
        boxes = torch.stack([p.point_coords for p in prompts]).float()
        if boxes.size(1) == 0 or boxes.size(-1) != 4:
            raise ValueError('point_coords must be [N, 4] boxes with N >= 1 '
                             f'(a click as its 6-px box), got '
                             f'{tuple(boxes.shape[1:])}.')
        scale = boxes.new_tensor(
            [[[s.metainfo['img_shape'][1], s.metainfo['img_shape'][0]] * 2]
             for s in batch_data_samples])
        pos = self.pos_linear(self.box_encoding(boxes / scale, eps))
        labels = torch.stack([p.pb_labels for p in prompts]).long()
        queries = self.pb_embedding(labels) + pos
        if self.num_mask_tokens == 1:
            return queries + self.mask_tokens.weight
        queries = queries.repeat_interleave(self.num_mask_tokens, 1)
        return queries + self.mask_tokens.weight.repeat(1, boxes.size(1), 1)

    def prompt_attn_mask(self, num_prompts: int,
                         device: torch.device) -> Tensor:
        """``[N * T, N * T]`` bool self-attention mask (True = blocked):
        the mask tokens of one prompt see each other, never other
        prompts."""
        owner = torch.arange(
            num_prompts, device=device).repeat_interleave(self.num_mask_tokens)
        return owner[:, None] != owner[None, :]

    def box_encoding(self, boxes: Tensor, eps: float = 1e-5) -> Tensor:
        """Normalised (x1, y1, x2, y2) boxes ``[B, N, 4]`` -> ``[B, N,
        2C]``: mmdet's ``coordinate_to_encoding`` of their (cx, cy, w, h),
        clamped to ``[eps, 1 - eps]`` (the pos_linear's inputs).

        The same element-wise operations as mmdet's, on the four
        coordinates at once and with its frequencies computed once (a
        click runs it every time).
        """
        lo, hi = boxes[..., :2], boxes[..., 2:]
        # mmdet's bbox_xyxy_to_cxcywh, in its order (y, x, w, h) of the
        # encoding's four parts.
        coords = torch.cat([((lo + hi) / 2).flip(-1), hi - lo], dim=-1)
        pos = (coords.clamp(eps, 1 - eps) *
               (2 * math.pi))[..., None] / self.pos_frequencies
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()),
                           dim=-1).flatten(2)

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def forward(self,
                x: FeatureMap,
                batch_data_samples: SampleList,
                all_stages: bool = True) -> HeadOutputs:
        """
        Args:
            x (Tensor | LowRankFeatureMap): Neck features ``[B * T, C, H,
                W]`` (T = 1 for images).
            batch_data_samples (list): ``DetDataSample`` for images (with
                ``gt_instances_collected`` for prompts) or
                ``TrackDataSample`` for clips.
            all_stages (bool): With False, only what :meth:`predict`
                returns is computed (the lists then hold the adapter's
                outputs last, and no stage outputs that nothing reads): no
                stage's class scores for object queries (the adapter has
                its own), only the last stage's for prompts (the adapter's
                are those), no stage IoUs for prompts and the last one's
                for object queries, and no last-stage masks for prompts
                (the adapter attends to the map instead): a pass over the
                map and most of a stage's small products saved.

        Returns:
            tuple: per-output lists of class scores, mask logits and IoU
            predictions (stages, then the adapter), and the final queries
            ``[B, N, C]`` (used to link clips of a video).
        """
        num_frames = 0
        if isinstance(batch_data_samples[0], TrackDataSample):
            num_frames = len(batch_data_samples[0])
        batch_size = len(batch_data_samples)
        prompt_mode = num_frames == 0 and self.is_prompt_batch(
            batch_data_samples)

        features = x
        if num_frames > 0:
            # One query predicts a mask tube: stack the frames along H.
            features = dense(x).unflatten(0,
                                          (batch_size, num_frames)).transpose(
                                              1, 2).flatten(2, 3)

        attn_mask = None
        # One mask token per prompt: each query sees only itself.
        isolated = prompt_mode and self.num_mask_tokens == 1
        if prompt_mode:
            queries = self.prompt_queries(batch_data_samples)
            if not isolated:
                attn_mask = self.prompt_attn_mask(
                    queries.size(1) // self.num_mask_tokens, queries.device)
        else:
            queries = self.kernels.weight[None].expand(batch_size, -1, -1)

        def frames(masks: Tensor) -> Tensor:
            return masks.unflatten(2,
                                   (num_frames, -1)) if num_frames else masks

        all_cls, all_masks, all_ious = [], [], []
        masks = project(features, queries)
        for i, stage in enumerate(self.mask_heads):
            last = i == len(self.mask_heads) - 1
            with_masks = all_stages or not (prompt_mode and last)
            with_cls = all_stages or (prompt_mode and last)
            with_iou = all_stages or (not prompt_mode and last)
            cls_embed, masks, ious, queries = stage(
                features,
                queries,
                masks,
                attn_mask,
                with_masks=with_masks,
                with_cls=with_cls,
                with_iou=with_iou,
                isolated=isolated)
            if with_cls:
                all_cls.append(self.classifier(cls_embed) / self.temperature)
            if with_masks:
                all_masks.append(frames(masks))
            if with_iou:
                all_ious.append(ious)

        if prompt_mode:
            queries = self.prompt_norm(
                attend_to_feature_map(self.prompt_attn, queries, features))
            all_cls.append(all_cls[-1])
            all_ious.append(self.prompt_iou(queries))
        else:
            queries = update_with_pooled(self.panoptic_attn, features, queries,
                                         masks > 0)
            all_cls.append(self.classifier(self.panoptic_cls(queries)))
            all_ious.append(all_ious[-1])
        masks = project(features, queries)
        all_masks.append(frames(masks))
        return all_cls, all_masks, all_ious, queries

    def predict(self, x: FeatureMap,
                batch_data_samples: SampleList) -> Tuple[Tensor, ...]:
        """The adapter's outputs: class scores ``[B, N, K + 1]``, mask logits
        at feature resolution ``[B, N, h, w]`` (``[B, N, T, h, w]`` for
        clips), IoU predictions ``[B, N, 1]`` and the final queries
        ``[B, N, C]``. Upsampling is left to the consumer, which may need
        only some of the masks."""
        all_cls, all_masks, all_ious, queries = self(
            x, batch_data_samples, all_stages=False)
        return all_cls[-1], all_masks[-1], all_ious[-1], queries
