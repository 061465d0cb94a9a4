# COCO-SAM: every panoptic segment of COCO val2017 (things and stuff) gets
# one click at the point farthest from its border, computed on the mask
# resized to (1333, 800) keep-ratio and fed as the 6-px box around it; the
# predicted masks are scored against the original-resolution segments.
# For the box variant (things prompted by their box, beyond the reference)
# set thing_prompt='box' on GenerateSegmentPrompts (test_pipeline[3]).
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import Resize
from mmengine.dataset import DefaultSampler

from rap_sam.datasets import CocoPanopticOVDataset
from rap_sam.datasets.transforms import (GenerateSegmentPrompts,
                                         LoadPanopticSegments,
                                         PackPromptInputs)
from rap_sam.evaluation import InteractiveMetric

data_root = 'data/coco/'
backend_args = None

test_pipeline = [
    dict(type=LoadImageFromFile, backend_args=backend_args),
    dict(type=LoadPanopticSegments, backend_args=backend_args),
    dict(type=Resize, scale=(1333, 800), keep_ratio=True),
    dict(type=GenerateSegmentPrompts, thing_prompt='click'),
    dict(type=PackPromptInputs),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    dataset=dict(
        type=CocoPanopticOVDataset,
        data_root=data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
val_dataloader = test_dataloader

test_evaluator = dict(type=InteractiveMetric)
val_evaluator = test_evaluator
