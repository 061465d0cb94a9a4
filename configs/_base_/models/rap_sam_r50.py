# RAP-SAM with a ResNet-50 backbone: the architecture of the released
# rapsam_r50_12e.pth (joint COCO-panoptic + YouTube-VIS-2019 class space:
# 102 things + 53 stuff).
from mmdet.models import CrossEntropyLoss, DiceLoss, ResNet

from rap_sam.models import (LiteDeformNeck, RapSAM, RapSAMDataPreprocessor,
                            RapSAMHead, ScoredPanopticFusionHead)

num_things_classes = 102
num_stuff_classes = 53
num_classes = num_things_classes + num_stuff_classes
ov_model_name = 'convnext_large_d_320'

data_preprocessor = dict(
    type=RapSAMDataPreprocessor,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
    pad_mask=True,
    mask_pad_value=0,
    pad_seg=True,
    seg_pad_value=255)

model = dict(
    type=RapSAM,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type=ResNet,
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type=LiteDeformNeck,
        in_channels=(256, 512, 1024, 2048),
        agg_channels=128,
        out_channels=256,
        # Deformable conv: 'auto' is mmcv's kernel on GPUs and gather + GEMM
        # elsewhere (equal to float rounding); 'mmcv' everywhere is the
        # reference's, 'onnx' exports with standard ONNX operators.
        dcn_impl='auto'),
    panoptic_head=dict(
        type=RapSAMHead,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=100,
        feat_channels=256,
        num_stages=3,
        temperature=0.1,
        ov_classifier_name=f'{ov_model_name}_Concat_CocoPanopticOVDataset'
        '_YouTubeVISDataset_2019',
        cls_embed_dims=768,
        loss_cls=dict(
            type=CrossEntropyLoss,
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type=CrossEntropyLoss,
            use_sigmoid=True,
            reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type=DiceLoss,
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0)),
    panoptic_fusion_head=dict(
        type=ScoredPanopticFusionHead,
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        loss_panoptic=None,
        init_cfg=None),
    train_cfg=None,
    test_cfg=dict(
        panoptic_on=True,
        semantic_on=False,
        instance_on=True,
        max_per_image=100,
        iou_thr=0.8,
        object_mask_thr=0.8,
        filter_low_score=True))
