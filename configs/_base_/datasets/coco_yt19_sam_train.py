# The joint training data of the recipe: COCO panoptic as 1-frame videos,
# YouTube-VIS 2019 train as 2-frame clips (interval 2) repeated x25, and
# COCO panoptic again as prompt data (30 prompts per image, about half of
# the thing prompts as boxes), concatenated over the joint class space
# (102 things + 53 stuff). Each batch holds one source (and one aspect-ratio
# group), and the model routes it to that source's loss.
#
# Augmentation: large-scale jitter: random flip, resize to a random
# 0.8-2.0x (prompts: 0.1-2.0x, as the reference) of image_size keeping the
# aspect ratio, random crop of image_size.
from mmcv.transforms import (LoadImageFromFile, RandomResize,
                             TransformBroadcaster)
from mmdet.datasets.transforms import (LoadTrackAnnotations, PackTrackInputs,
                                       RandomCrop, RandomFlip, Resize)
from mmengine.dataset import DefaultSampler, RepeatDataset

# yapf: disable
from rap_sam.datasets import (ClipFrameSample, CocoPanopticOVDataset,
                              ConcatOVDataset, FilterSmallSegments,
                              GenerateTrainPrompts, ImageAsClip,
                              LoadPanopticTrainAnnotations,
                              PackPromptTrainInputs,
                              SourceAspectRatioBatchSampler,
                              YouTubeVISOVDataset)

# yapf: enable

coco_data_root = 'data/coco/'
yt19_data_root = 'data/youtube_vis_2019/'
backend_args = None
image_size = (1280, 736)  # (w, h), as mmcv's Resize reads a scale
crop_size = (736, 1280)  # (h, w), as RandomCrop reads it
num_prompts = 30

# Pieces every source's pipeline is built from, so that the sources load
# and jitter alike.
load_coco = [
    dict(type=LoadImageFromFile, backend_args=backend_args),
    dict(type=LoadPanopticTrainAnnotations, backend_args=backend_args),
]
lsj = [
    dict(type=RandomFlip, prob=0.5),
    dict(
        type=RandomResize,
        resize_type=Resize,
        scale=image_size,
        ratio_range=(0.8, 2.0),
        keep_ratio=True),
    dict(
        type=RandomCrop,
        crop_size=crop_size,
        crop_type='absolute',
        recompute_bbox=True,
        allow_negative_crop=True),
]
prompt_lsj = [lsj[0], dict(lsj[1], ratio_range=(0.1, 2.0)), lsj[2]]

coco_train_pipeline = load_coco + lsj + [
    dict(type=FilterSmallSegments, min_area=1),
    dict(type=ImageAsClip),
    dict(type=PackTrackInputs),
]

yt19_train_pipeline = [
    dict(type=ClipFrameSample, num_frames=2, interval=2),
    dict(
        type=TransformBroadcaster,
        share_random_params=True,
        transforms=[
            dict(type=LoadImageFromFile, backend_args=backend_args),
            dict(type=LoadTrackAnnotations, with_mask=True),
        ] + lsj),
    dict(type=FilterSmallSegments, min_area=1),
    dict(type=PackTrackInputs),
]

sam_train_pipeline = load_coco + prompt_lsj + [
    dict(type=FilterSmallSegments, min_area=1),
    dict(
        type=GenerateTrainPrompts,
        num_prompts=num_prompts,
        box_prob=0.5,
        min_area=32),
    dict(type=PackPromptTrainInputs),
]

coco_train_dataset = dict(
    type=CocoPanopticOVDataset,
    data_root=coco_data_root,
    ann_file='annotations/panoptic_train2017.json',
    data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline=coco_train_pipeline,
    backend_args=backend_args)

train_dataloader = dict(
    batch_size=2,  # per GPU, for every source
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type=DefaultSampler, shuffle=True),
    batch_sampler=dict(type=SourceAspectRatioBatchSampler),
    dataset=dict(
        type=ConcatOVDataset,
        data_tags=('coco', 'yt19', 'sam'),
        prompt_tags=('sam', ),
        datasets=[
            coco_train_dataset,
            dict(
                type=RepeatDataset,
                times=25,
                dataset=dict(
                    type=YouTubeVISOVDataset,
                    dataset_version='2019',
                    data_root=yt19_data_root,
                    # the official file (or mmdet's converted
                    # annotations/youtube_vis_2019_train.json)
                    ann_file='train.json',
                    data_prefix=dict(img_path='train/JPEGImages'),
                    filter_cfg=dict(filter_empty_gt=True, min_size=32),
                    pipeline=yt19_train_pipeline,
                    backend_args=backend_args)),
            dict(coco_train_dataset, pipeline=sam_train_pipeline),
        ]))
