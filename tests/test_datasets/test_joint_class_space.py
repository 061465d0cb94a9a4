"""The joint class space of COCO panoptic + YouTube-VIS 2019 and the
concatenated dataset that routes each sample to its source."""
import os.path as osp

from helpers import REPO
from mmengine.config import Config

from rap_sam.datasets import (CocoPanopticOVDataset, ConcatOVDataset,
                              YouTubeVISOVDataset, merge_class_spaces)
from rap_sam.datasets.joint_class_space import map_into
from rap_sam.utils.text_classifier import dataset_vocabulary

YTVIS = YouTubeVISOVDataset.METAINFO


def test_merge_gives_the_released_class_space():
    space = merge_class_spaces([CocoPanopticOVDataset.METAINFO, YTVIS])
    assert (len(space.thing_classes), len(space.stuff_classes)) == (102, 53)
    coco_map, yt_map = space.label_maps
    assert coco_map.tolist() == list(range(80)) + list(range(102, 155))
    names = YTVIS['classes']
    # shared by synonym: 'dog' is COCO's 'dog,dogs,puppy,puppies'
    assert yt_map[names.index('dog')] == 16
    assert yt_map[names.index('tennis_racket')] == 38  # '_' -> ' '
    # 'sedan' and 'motorbike' share no synonym with 'car' / 'motorcycle'
    assert space.thing_classes[yt_map[names.index('sedan')]] == 'sedan'
    assert space.thing_classes[80] == 'giant panda'


def test_things_merge_with_things_only():
    space = merge_class_spaces([
        dict(thing_classes=('table,desk', ), stuff_classes=('floor', )),
        dict(thing_classes=('chair', ), stuff_classes=('table', 'floor')),
    ])
    assert space.thing_classes == ['table,desk', 'chair']
    assert space.stuff_classes == ['floor', 'table']
    assert space.label_maps[1].tolist() == [1, 3, 2]
    agnostic = map_into(dict(classes=('desk', 'zebra')), space)
    assert agnostic.tolist() == [0, -1]


def test_concat_dataset_names_the_joint_vocabulary():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/rap_sam/rap_sam_r50_12e_adaptor.py'))
    dataset = ConcatOVDataset(
        **{
            k: v
            for k, v in cfg.train_dataloader.dataset.items() if k != 'type'
        },
        lazy_init=True)
    assert dataset.dataset_name == ('Concat_CocoPanopticOVDataset_'
                                    'YouTubeVISDataset_2019')
    assert len(dataset.metainfo['classes']) == 155
    # what tools/gen_cls.py --split train encodes for this config
    name, classes = dataset_vocabulary(cfg.train_dataloader.dataset)
    assert name == dataset.dataset_name and len(classes) == 155
    head = cfg.model.panoptic_head
    assert head.ov_classifier_name.endswith(name)
    assert head.num_things_classes + head.num_stuff_classes == 155
