# The toy recipe: the joint recipe (all three sources, its losses, sampler
# and optimiser) with the small model on 128-px images of the toy data
# (tools/make_toy_data.py), sized to train on 2 CPU cores in minutes. Run
# it, with the evaluation, through
#   python tools/toy_train_eval.py
from mmcv.transforms import (LoadImageFromFile, RandomResize,
                             TransformBroadcaster)
from mmdet.datasets.transforms import (LoadTrackAnnotations, PackTrackInputs,
                                       RandomCrop, RandomFlip, Resize)
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler, RepeatDataset
from mmengine.optim import LinearLR, MultiStepLR

# yapf: disable
from rap_sam.datasets import (ClipFrameSample, CocoPanopticOVDataset,
                              ConcatOVDataset, FilterSmallSegments,
                              GenerateTrainPrompts, ImageAsClip,
                              LoadPanopticTrainAnnotations,
                              PackPromptTrainInputs,
                              SourceAspectRatioBatchSampler,
                              YouTubeVISOVDataset)
# yapf: enable
from rap_sam.engine import SkippedSamplesHook

with read_base():
    from .rap_sam_r50_12e_adaptor import *  # noqa: F401,F403
    from .toy_rap_sam_model import *  # noqa: F401,F403

model.update(toy_model)
model.update(
    panoptic_head=dict(
        ov_classifier_name='toy_Concat_CocoPanopticOVDataset'
        '_YouTubeVISDataset_2019',
        # Two thirds of the batches are prompts, which train no classes;
        # at the recipe's weight (2.0) the classes were still unsure after
        # 16 epochs (PQ 10 in a clicks-only run), at 4.0 they are not.
        loss_cls=dict(loss_weight=4.0)),
    # 32 x 32 mask logits at 128 px: a thousand points cover them. The
    # adapter takes the last stage's matching: matched on its own, a
    # from-scratch adapter often learned to predict another object than
    # the one it pools under, and then its classes stayed unsure (PQ 4-7
    # with seeds 1 and 2).
    train_cfg=dict(num_points=1024, adapter_matching='last_stage'))

image_size = crop_size = toy_image_size
num_prompts = 30
coco_root = toy_root + 'data/coco/'
# Jitter upwards only: crops of the square toy images are then never
# padded, so clicks (encoded relative to the image) and the features'
# coordinates (spanning the padded input) agree, as they do at test time.
lsj = [
    dict(type=RandomFlip, prob=0.5),
    dict(
        type=RandomResize,
        resize_type=Resize,
        scale=image_size,
        ratio_range=(1.0, 1.5),
        keep_ratio=True),
    dict(
        type=RandomCrop,
        crop_size=crop_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
]
load_coco = [
    dict(type=LoadImageFromFile),
    dict(type=LoadPanopticTrainAnnotations),
]
coco = dict(
    type=CocoPanopticOVDataset,
    data_root=coco_root,
    ann_file='annotations/panoptic_train2017.json',
    data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
    pipeline=load_coco + lsj + [
        dict(type=FilterSmallSegments, min_area=1),
        dict(type=ImageAsClip),
        dict(type=PackTrackInputs)
    ])
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type=DefaultSampler, shuffle=True),
    batch_sampler=dict(type=SourceAspectRatioBatchSampler),
    dataset=dict(
        type=ConcatOVDataset,
        data_tags=('coco', 'yt19', 'sam'),
        datasets=[
            coco,
            # Video clips x1 and prompt images x4 (prompts: three quarters
            # of the batches): with the adapter matched by the last stage
            # the classes are learned in fewer batches than the clicks
            # (docs/training.md).
            dict(
                type=RepeatDataset,
                times=1,
                dataset=dict(
                    type=YouTubeVISOVDataset,
                    dataset_version='2019',
                    data_root=toy_root + 'data/youtube_vis_2019/',
                    ann_file='train.json',
                    data_prefix=dict(img_path='train/JPEGImages'),
                    pipeline=[
                        dict(type=ClipFrameSample, num_frames=2, interval=2),
                        dict(
                            type=TransformBroadcaster,
                            share_random_params=True,
                            transforms=[
                                dict(type=LoadImageFromFile),
                                dict(
                                    type=LoadTrackAnnotations, with_mask=True),
                            ] + lsj),
                        dict(type=FilterSmallSegments, min_area=1),
                        dict(type=PackTrackInputs),
                    ])),
            # Prompts are the slowest to learn (a click's query must find
            # its place in the features).
            dict(
                type=RepeatDataset,
                times=4,
                dataset=dict(
                    coco,
                    pipeline=load_coco + lsj + [
                        dict(type=FilterSmallSegments, min_area=1),
                        # Clicks only (the recipe: half of the thing
                        # prompts as boxes): clicks on things are what the
                        # toy model learns last, and every box prompt is a
                        # click it does not see (measured, seed 0: thing
                        # click mIoU 0.36 at 0.25 and 0.1, 0.66 at 0).
                        dict(
                            type=GenerateTrainPrompts,
                            num_prompts=num_prompts,
                            box_prob=0.0,
                            min_area=32),
                        dict(type=PackPromptTrainInputs),
                    ])),
        ]))

# From scratch in about 3100 iterations: a larger, unscaled lr (3e-4; at
# 1e-3 the classes never became confident: PQ 0), the full lr for the
# backbone (nothing pretrained to preserve) and a short warm-up; otherwise
# the recipe's optimiser. fused: on CPU the per-tensor AdamW step
# costs more than the small model's forward. 18 epochs of 172 iterations
# fit in 10 minutes of one core (docs/training.md).
max_epochs = 18
train_cfg.update(max_epochs=max_epochs)
optim_wrapper.optimizer.update(lr=3e-4, fused=True)
optim_wrapper.paramwise_cfg.custom_keys.backbone.update(lr_mult=1.0)
auto_scale_lr.update(enable=False)
param_scheduler = [
    dict(type=LinearLR, start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type=MultiStepLR,
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs - 2],
        gamma=0.1)
]
# A checkpoint every epoch (one kept; 23 MB, about 0.1 s to write): a run
# killed at any moment resumes with --resume from the last epoch.
default_hooks.update(
    logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor.update(window_size=10)
custom_hooks = [dict(type=SkippedSamplesHook, interval=10)]
# Seeded (data order, augmentation, prompts, initial weights), so the toy
# run's figures in docs/training.md can be reproduced.
randomness = dict(seed=0)
