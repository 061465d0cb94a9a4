import json
import os.path as osp
import re
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from mmdet.datasets import YouTubeVISDataset
from mmdet.registry import DATASETS
from mmdet.structures import TrackDataSample
from mmengine.config import Config

from rap_sam.datasets import (DatasetContentError, DatasetLayoutError,
                              LazyVideo, SampleLoadError, YouTubeVISOVDataset)
from rap_sam.datasets.youtube_vis_format import official_to_coco_video
from rap_sam.testing import make_youtube_vis

CONFIG = Path(__file__).parents[2] / 'configs/_base_/datasets/' \
    'youtube_vis_2019.py'


def build(root, split='valid', ann_file=None, pipeline=(), **kwargs):
    return YouTubeVISOVDataset(
        dataset_version='2019',
        data_root=str(root),
        ann_file=ann_file or f'{split}.json',
        data_prefix=dict(img_path=f'{split}/JPEGImages'),
        test_mode=True,
        pipeline=list(pipeline),
        **kwargs)


@pytest.fixture
def toy(tmp_path):
    return tmp_path, make_youtube_vis(
        str(tmp_path), num_videos=3, num_frames=4, seed=3)


def test_class_names():
    dataset = build('unused', lazy_init=True)
    classes = dataset.metainfo['classes']
    assert len(classes) == 40
    assert classes[:3] == ('person', 'giant_panda', 'lizard')
    assert classes[-1] == 'tennis_racket'
    mmdet = YouTubeVISDataset(dataset_version='2019', lazy_init=True)
    assert classes == mmdet.metainfo['classes']
    assert dataset.dataset_name == 'YouTubeVISDataset_2019'
    assert DATASETS.get('YouTubeVISOVDataset') is YouTubeVISOVDataset


def test_loads_official_json(toy):
    root, written = toy
    for split in ('train', 'valid'):
        dataset = build(root, split)
        videos = written[split]['videos']
        assert len(dataset) == len(videos) == 3
        for k, video in enumerate(videos):
            info = dataset.get_data_info(k)
            assert info['video_id'] == video['id']
            assert info['video_length'] == 4
            assert [osp.relpath(im['img_path'], osp.join(
                root, split, 'JPEGImages')) for im in info['images']] == \
                video['file_names']
            for t, image in enumerate(info['images']):
                assert image['frame_id'] == t
                present = [
                    tr for tr in video['tracks'] if tr['masks'][t] is not None
                ]
                assert len(image['instances']) == len(present)
                for inst, track in zip(image['instances'], present):
                    assert inst['bbox_label'] == track['category_id'] - 1
                    rle = mask_utils.frPyObjects(inst['mask'], video['height'],
                                                 video['width'])
                    assert np.array_equal(
                        mask_utils.decode(rle).astype(bool), track['masks'][t])
            # instance ids are one per track, unique over the dataset
            ids = {
                inst['instance_id']
                for im in info['images']
                for inst in im['instances']
            }
            assert len(ids) == len(video['tracks'])


def test_reads_mmdet_converted_json(toy):
    root, _ = toy
    official = json.loads(Path(root, 'valid.json').read_text())
    converted = official_to_coco_video(official)
    assert len(converted['images']) == 12
    Path(root, 'converted.json').write_text(json.dumps(converted))
    a = build(root, 'valid')
    b = build(root, 'valid', ann_file='converted.json')
    assert [a.get_data_info(i) for i in range(3)] == \
        [b.get_data_info(i) for i in range(3)]


def test_valid_without_annotations(tmp_path):
    make_youtube_vis(
        str(tmp_path),
        num_videos=2,
        num_frames=3,
        splits=('valid', ),
        valid_annotations=False)
    assert json.loads(Path(tmp_path,
                           'valid.json').read_text())['annotations'] is None
    dataset = build(tmp_path)
    assert len(dataset) == 2
    assert all(not im['instances']
               for im in dataset.get_data_info(0)['images'])


def test_config_gives_whole_videos(toy):
    root, written = toy
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.test_dataloader.batch_size == 1
    assert cfg.test_dataloader.dataset.data_root == 'data/youtube_vis_2019/'
    assert cfg.test_evaluator.format_only is True
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = str(root)
    dataset = DATASETS.build(dataset_cfg)
    video = written['valid']['videos'][0]
    sample = dataset[0]
    h, w = video['height'], video['width']
    scale = min(1280 / max(h, w), 736 / min(h, w))
    shape = (int(h * scale + 0.5), int(w * scale + 0.5))
    # The frames are read when the model asks for a clip.
    assert isinstance(sample['inputs'], LazyVideo)
    assert len(sample['inputs']) == 4
    samples = sample['data_samples']
    assert isinstance(samples, TrackDataSample) and len(samples) == 4
    for t, frame in enumerate(samples):
        assert frame.frame_id == t and frame.video_id == video['id']
        assert frame.ori_shape == (h, w) and 'img_shape' not in frame
        assert frame.ori_video_length == 4
        present = sum(tr['masks'][t] is not None for tr in video['tracks'])
        assert len(frame.instances) == present
    frames, metas = sample['inputs'].read_clip(1, 3)
    assert frames.shape == (2, 3, *shape) and frames.dtype == torch.uint8
    assert [m['img_shape'] for m in metas] == [shape, shape]
    assert [m['ori_shape'] for m in metas] == [(h, w), (h, w)]


def test_missing_root_file_and_frame(toy, tmp_path):
    root, written = toy
    with pytest.raises(
            DatasetLayoutError,
            match=r"Data root '.*nowhere' does not exist"
            r'(.|\n)*JPEGImages'):
        build(tmp_path / 'nowhere')
    with pytest.raises(
            DatasetLayoutError,
            match=r"Annotation file '.*test.json' not found"):
        build(root, 'test')
    frame = osp.join(written['valid']['img_dir'],
                     written['valid']['videos'][2]['file_names'][3])
    Path(frame).unlink()
    with pytest.raises(
            DatasetLayoutError,
            match=r'1 of 12 frames listed in .* are missing, '
            r'e\.g\. ' + re.escape(f"'{frame}'")):
        build(root)


def test_unreadable_frame(toy):
    root, written = toy
    frame = osp.join(written['valid']['img_dir'],
                     written['valid']['videos'][1]['file_names'][2])
    Path(frame).write_bytes(b'')
    dataset = build(
        root,
        pipeline=[
            dict(
                type='TransformBroadcaster',
                transforms=[dict(type='LoadImageFromFile')])
        ])
    assert len(dataset[0]['img']) == 4
    with pytest.raises(
            SampleLoadError,
            match=r'sample 1 could not be loaded: ' +
            re.escape(f"'{frame}' is not a readable image")):
        dataset[1]


def test_a_track_without_masks_is_named(toy):
    """A KeyError from the official format's reader."""
    root, _ = toy
    path = Path(root, 'valid.json')
    content = json.loads(path.read_text())
    del content['annotations'][0]['segmentations']
    path.write_text(json.dumps(content))
    with pytest.raises(DatasetContentError) as err:
        build(root)
    assert str(err.value).startswith(
        f"'{path}' has an entry without 'segmentations': it is not a "
        'complete YouTube-VIS file')


def test_bad_annotation_content(toy):
    root, _ = toy
    path = Path(root, 'valid.json')
    content = json.loads(path.read_text())
    content['annotations'].append(
        dict(content['annotations'][0], id=999, video_id=77))
    path.write_text(json.dumps(content))
    with pytest.raises(
            DatasetContentError,
            match=r"annotated video\(s\) are missing from its "
            r"'videos' list, e\.g\. video_id \[77\]"):
        build(root)
    content['annotations'].pop()
    content['categories'] = content['categories'][:30]
    path.write_text(json.dumps(content))
    with pytest.raises(
            DatasetContentError,
            match=r"lacks 10 of the 40 YouTubeVISDataset_2019 "
            r"categories, e\.g\. \['tiger'"):
        build(root)


def test_train_split_in_train_mode(toy):
    root, written = toy
    dataset = YouTubeVISOVDataset(
        dataset_version='2019',
        data_root=str(root),
        ann_file='train.json',
        data_prefix=dict(img_path='train/JPEGImages'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert len(dataset) == 3 and dataset.num_all_imgs == 12
    # every toy frame holds an object, so none is filtered out
    assert dataset.img_ids_with_ann == set(range(1, 13))
