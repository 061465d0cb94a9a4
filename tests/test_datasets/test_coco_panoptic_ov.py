import json
import os.path as osp
import re
from pathlib import Path

import pytest
import torch
from mmdet.datasets import CocoPanopticDataset
from mmdet.registry import DATASETS
from mmengine.config import Config

from rap_sam.datasets import (CocoPanopticOVDataset, DatasetContentError,
                              DatasetLayoutError, SampleLoadError,
                              display_names)
from rap_sam.testing import make_coco_panoptic
from rap_sam.testing.coco_panoptic_categories import STUFF_IDS, THING_IDS

CONFIG = Path(__file__).parents[2] / 'configs/_base_/datasets/' \
    'coco_panoptic_ov.py'


def build(root, split='val2017', pipeline=(), **kwargs):
    return CocoPanopticOVDataset(
        data_root=str(root),
        ann_file=f'annotations/panoptic_{split}.json',
        data_prefix=dict(
            img=f'{split}/', seg=f'annotations/panoptic_{split}/'),
        test_mode=True,
        pipeline=list(pipeline),
        **kwargs)


@pytest.fixture
def toy(tmp_path):
    return tmp_path, make_coco_panoptic(
        str(tmp_path), num_images=3, seed=1, splits=('train2017', 'val2017'))


def test_class_names():
    meta = CocoPanopticOVDataset.METAINFO
    assert len(meta['classes']) == 133
    assert meta['thing_classes'] == meta['classes'][:80]
    assert meta['stuff_classes'] == meta['classes'][80:]
    assert meta['classes'][0].split(',')[:3] == ['person', 'child', 'girl']
    assert meta['classes'][49] == 'orange fruit'
    assert meta['stuff_classes'][-1] == 'rug'
    assert meta['palette'] == CocoPanopticDataset.METAINFO['palette']
    names = display_names(meta['classes'])
    assert names[:3] == ['person', 'bicycle', 'car']
    assert names[119] == 'sky' and names[62] == 'tv'
    assert CocoPanopticOVDataset.dataset_name == 'CocoPanopticOVDataset'
    assert DATASETS.get('CocoPanopticOVDataset') is CocoPanopticOVDataset


def test_loads_toy_data(toy):
    root, written = toy
    for split in ('val2017', 'train2017'):
        dataset = build(root, split)
        images = written[split]['images']
        assert len(dataset) == len(images) == 3
        for k, image in enumerate(images):
            info = dataset.get_data_info(k)
            assert info['img_id'] == image['id']
            assert osp.isfile(info['img_path'])
            segments = info['segments_info']
            assert [s['id'] for s in segments] == \
                [s['id'] for s in image['segments']]
            for seg, truth in zip(segments, image['segments']):
                cat = truth['category_id']
                label = THING_IDS.index(cat) if truth['isthing'] else \
                    80 + STUFF_IDS.index(cat)
                assert seg['category'] == label
                assert seg['is_thing'] == bool(truth['isthing'])
            assert len(info['instances']) == sum(s['isthing']
                                                 for s in image['segments'])
    # the category ids map to the open-vocabulary names
    classes = dataset.metainfo['classes']
    assert classes[80 + STUFF_IDS.index(187)] == 'sky,clouds'
    assert classes[THING_IDS.index(18)] == 'dog,dogs,puppy,puppies'


def test_config_pipeline_outputs(toy):
    root, written = toy
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.test_dataloader.batch_size == 1
    assert cfg.test_dataloader.dataset.data_root == 'data/coco/'
    assert cfg.test_evaluator.ann_file is None
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = str(root)
    dataset = DATASETS.build(dataset_cfg)
    assert isinstance(dataset, CocoPanopticOVDataset)
    for k, image in enumerate(written['val2017']['images']):
        sample = dataset[k]
        h, w = image['height'], image['width']
        scale = min(1333 / max(h, w), 800 / min(h, w))
        expected = (int(h * scale + 0.5), int(w * scale + 0.5))
        assert sample['inputs'].shape == (3, *expected)
        meta = sample['data_samples'].metainfo
        assert meta['ori_shape'] == (h, w)
        assert meta['img_shape'] == expected
        assert len(meta['segments_info']) == len(image['segments'])
        assert osp.basename(meta['seg_map_path']) == \
            image['file_name'].replace('.jpg', '.png')
        gt = sample['data_samples'].gt_instances
        assert len(gt) == sum(s['isthing'] for s in image['segments'])
        sem = sample['data_samples'].gt_sem_seg.sem_seg
        assert sem.shape == (1, h, w)  # ground truth kept at original size
        assert torch.equal(
            sem[0] == 255,
            torch.from_numpy(sum(s['mask'] for s in image['segments']) == 0))


def test_missing_root_and_annotation_file(tmp_path):
    with pytest.raises(
            DatasetLayoutError,
            match=r"Data root '.*nowhere' does not exist(.|\n)*"
            r'panoptic_val2017.json'):
        build(tmp_path / 'nowhere')
    with pytest.raises(
            DatasetLayoutError,
            match=r"Annotation file '.*panoptic_val2017.json' not "
            r'found(.|\n)*Expected layout'):
        build(tmp_path)


def test_missing_and_unreadable_image(toy):
    root, written = toy
    image = written['val2017']['images'][1]
    path = osp.join(root, 'val2017', image['file_name'])
    Path(path).write_bytes(b'not a jpeg')
    dataset = build(root, pipeline=[dict(type='LoadImageFromFile')])
    dataset[0]
    with pytest.raises(
            SampleLoadError,
            match=re.escape(f"'{path}' is not a readable image")):
        dataset[1]
    Path(path).unlink()
    with pytest.raises(
            DatasetLayoutError,
            match=r'1 of 3 images listed in .* are missing, e\.g\. ' +
            re.escape(f"'{path}'")):
        build(root)


def test_annotation_for_missing_image(toy):
    root, written = toy
    ann_file = osp.join(root, 'annotations', 'panoptic_val2017.json')
    content = json.loads(Path(ann_file).read_text())
    stray = dict(content['annotations'][0], image_id=4242)
    content['annotations'].append(stray)
    Path(ann_file).write_text(json.dumps(content))
    with pytest.raises(
            DatasetContentError,
            match=r"1 annotation\(s\) refer to images missing "
            r"from its 'images' list, e\.g\. image_id \[4242\]"):
        build(root)


@pytest.mark.parametrize('drop', ['segments_info', 'category_id'])
def test_an_entry_missing_a_key_is_named(toy, drop):
    """pycocotools' bare KeyError at dataset build."""
    root, _ = toy
    ann_file = osp.join(root, 'annotations', 'panoptic_val2017.json')
    content = json.loads(Path(ann_file).read_text())
    annotation = content['annotations'][0]
    if drop == 'segments_info':
        del annotation['segments_info']
    else:
        del annotation['segments_info'][0]['category_id']
    Path(ann_file).write_text(json.dumps(content))
    with pytest.raises(DatasetContentError) as err:
        build(root)
    assert str(err.value) == (
        f"'{ann_file}' has an entry without '{drop}': it is not a complete "
        'COCO panoptic file; use the file as downloaded (or as the '
        'converter wrote it).')


def test_wrong_categories(toy):
    root, _ = toy
    ann_file = osp.join(root, 'annotations', 'panoptic_val2017.json')
    content = json.loads(Path(ann_file).read_text())
    del content['categories'][5]  # 'bus'
    Path(ann_file).write_text(json.dumps(content))
    with pytest.raises(
            DatasetContentError,
            match=r"133 COCO panoptic categories .* it has 132, "
            r"and category #5 is 'train' where 'bus'"):
        build(root)


def test_toy_categories_are_the_real_ones():
    """Ids and names of the toy json against the category table that mmdet
    ships with its tools (when the installed mmdet has them)."""
    import ast

    import mmdet

    from rap_sam.testing import coco_panoptic_categories
    path = Path(mmdet.__file__).parent / '.mim/tools/dataset_converters/' \
        'prepare_coco_semantic_annos_from_panoptic_annos.py'
    if not path.is_file():
        pytest.skip('mmdet without its tools')
    table = re.search(r'COCO_CATEGORIES = (\[.*?\n\])', path.read_text(),
                      re.S).group(1)
    real = [(c['id'], c['name'], c['isthing'])
            for c in ast.literal_eval(table)]
    assert [(c['id'], c['name'], c['isthing'])
            for c in coco_panoptic_categories()] == real


def test_train_split_in_train_mode(toy):
    root, _ = toy
    dataset = CocoPanopticOVDataset(
        data_root=str(root),
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert len(dataset) == 3
