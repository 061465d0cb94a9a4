# COCO panoptic val2017 with the open-vocabulary class names: PQ / SQ / RQ.
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import (LoadPanopticAnnotations, PackDetInputs,
                                       Resize)
from mmdet.evaluation import CocoPanopticMetric
from mmengine.dataset import DefaultSampler

from rap_sam.datasets import CocoPanopticOVDataset

data_root = 'data/coco/'
backend_args = None

test_pipeline = [
    dict(type=LoadImageFromFile, backend_args=backend_args),
    dict(type=Resize, scale=(1333, 800), keep_ratio=True),
    # after Resize on purpose: the ground truth stays at the original size
    dict(type=LoadPanopticAnnotations, backend_args=backend_args),
    dict(
        type=PackDetInputs,
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'segments_info', 'seg_map_path')),
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

# No ann_file: with one, CocoPanopticMetric looks the dataset's class names
# up in the json, and 'person,child,girl,...' is not a json name. Without it
# the metric takes categories from the dataset's metainfo and the ground
# truth from each sample's segments_info and the PNGs under seg_prefix.
# seg_prefix is spelled out, so a config that changes data_root after
# read_base() must set it again.
test_evaluator = dict(
    type=CocoPanopticMetric,
    ann_file=None,
    seg_prefix=data_root + 'annotations/panoptic_val2017/',
    backend_args=backend_args)
val_evaluator = test_evaluator
