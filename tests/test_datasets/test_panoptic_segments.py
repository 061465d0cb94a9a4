"""Segments that ``segments_info`` lists but the panoptic PNG lacks: left
out with one warning per PNG when some are missing, an error naming the PNG
when all are (training skips such a sample, see
``tests/test_training/test_bad_data.py``; evaluation stops)."""
import json
import os.path as osp
import re
import shutil

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from mmcv.transforms import Compose, LoadImageFromFile

from rap_sam.datasets import CocoPanopticOVDataset
from rap_sam.datasets.data_checks import SampleContentError, SampleLoadError
from rap_sam.datasets.transforms import (GenerateSegmentPrompts,
                                         LoadPanopticSegments,
                                         LoadPanopticTrainAnnotations,
                                         panoptic_segments)
from rap_sam.testing import make_coco_panoptic
from rap_sam.testing.toy_datasets import write_panoptic_png
from rap_sam.utils.user_errors import UserError

ENCODING = re.escape('id = R + 256 G + 256^2 B')


@pytest.fixture
def toy(tmp_path):
    """3 COCO panoptic images (all 64x96, so PNGs can be swapped) and the
    dataset that reads them."""
    written = make_coco_panoptic(
        str(tmp_path), num_images=3, seed=4, image_size=(64, 96))
    return _dataset(tmp_path), written['val2017']['images']


def _dataset(root):
    """The val split of the toy under ``root``, read as evaluation reads
    it."""
    return CocoPanopticOVDataset(
        data_root=str(root),
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=[])


def crowd_toy(tmp_path):
    """``toy`` with the last segment of the first image (a thing) marked
    ``iscrowd: 1`` in the annotation file, as COCO panoptic marks a crowd
    region; returns the dataset and that image's segments."""
    written = make_coco_panoptic(
        str(tmp_path), num_images=3, seed=4, image_size=(64, 96))
    ann_file = written['val2017']['ann_file']
    with open(ann_file) as f:
        content = json.load(f)
    listed = content['annotations'][0]['segments_info']
    segments = written['val2017']['images'][0]['segments']
    assert segments[-1]['isthing'] == 1
    assert listed[-1]['id'] == segments[-1]['id']
    listed[-1]['iscrowd'] = 1
    with open(ann_file, 'w') as f:
        json.dump(content, f)
    return _dataset(tmp_path), segments


@pytest.fixture
def warnings(monkeypatch):
    logged = []
    monkeypatch.setattr(panoptic_segments, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))
    return logged


def load(dataset, idx, loader=LoadPanopticSegments):
    pipeline = Compose([dict(type=LoadImageFromFile), dict(type=loader)])
    return pipeline(dataset.get_data_info(idx))


def repaint(path, segments):
    """Rewrite the PNG ``path`` with only ``segments`` (the rest: void)."""
    pan = np.zeros(segments[0]['mask'].shape, dtype=np.int64)
    for segment in segments:
        pan[segment['mask']] = segment['id']
    write_panoptic_png(path, pan)


def box(mask):
    """x1, y1, x2, y2 of a mask, x2/y2 exclusive."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def assert_instances(out, segments):
    """Every output key holds ``segments``, in order."""
    masks = np.stack([s['mask'] for s in segments])
    assert out['gt_masks'].masks.shape == masks.shape
    assert np.array_equal(out['gt_masks'].masks.astype(bool), masks)
    decoded = mask_utils.decode(out['gt_masks_rle']).transpose(2, 0, 1)
    assert np.array_equal(decoded.astype(bool), masks)
    assert out['gt_segment_ids'].tolist() == [s['id'] for s in segments]
    assert out['gt_is_thing'].tolist() == [
        bool(s['isthing']) for s in segments
    ]
    listed = {s['id']: s['category'] for s in out['segments_info']}
    assert out['gt_bboxes_labels'].tolist() == [
        listed[s['id']] for s in segments
    ]
    assert out['gt_bboxes'].numpy().tolist() == [
        box(s['mask']) for s in segments
    ]
    assert out['gt_ignore_flags'].tolist() == [False] * len(segments)


def test_all_present_gives_every_segment(toy, warnings):
    dataset, images = toy
    for idx, image in enumerate(images):
        assert_instances(load(dataset, idx), image['segments'])
        train = load(dataset, idx, LoadPanopticTrainAnnotations)
        assert np.array_equal(train['gt_masks'].masks.astype(bool),
                              np.stack([s['mask'] for s in image['segments']]))
    assert warnings == []


def test_absent_segments_are_left_out_with_one_warning(toy, warnings):
    dataset, images = toy
    segments = images[0]['segments']
    png = dataset.get_data_info(0)['seg_map_path']
    kept = [s for k, s in enumerate(segments) if k != 1]
    repaint(png, kept)
    out = load(dataset, 0)
    assert len(out['segments_info']) == len(segments)  # as listed
    assert_instances(out, kept)
    (message, kwargs), = warnings
    assert message == (
        f"Panoptic PNG '{png}' lacks 1 of the {len(segments)} segment ids "
        f"listed for it ({segments[1]['id']}); those segments are left out.")
    assert kwargs['level'] == 30  # logging.WARNING

    # the PNG is read every epoch: said once
    train = load(dataset, 0, LoadPanopticTrainAnnotations)
    assert len(warnings) == 1
    assert len(train['gt_masks']) == len(kept)
    assert np.array_equal(train['gt_bboxes_labels'], out['gt_bboxes_labels'])

    # no prompt for the absent segment, and none counted as lost in a resize
    prompts = GenerateSegmentPrompts()(out)
    assert prompts['prompt_segment_ids'].tolist() == [s['id'] for s in kept]
    assert prompts['num_skipped_prompts'] == 0


def test_training_leaves_crowd_regions_out(tmp_path, warnings):
    dataset, segments = crowd_toy(tmp_path)
    crowd = segments[-1]
    assert [s['is_thing'] for s in dataset.get_data_info(0)['segments_info']
            ] == [bool(s['isthing']) for s in segments[:-1]] + [False]
    train = load(dataset, 0, LoadPanopticTrainAnnotations)
    assert np.array_equal(train['gt_masks'].masks.astype(bool),
                          np.stack([s['mask'] for s in segments[:-1]]))
    assert crowd['mask'].any()
    assert warnings == []


def test_a_png_holding_only_its_crowd_regions_is_this_annotations(
        tmp_path, warnings):
    """The crowd segment is listed for the PNG too: the PNG holds one of its
    listed ids, so the other segments are absent, not the PNG wrong."""
    dataset, segments = crowd_toy(tmp_path)
    crowd = segments[-1]
    png = dataset.get_data_info(0)['seg_map_path']
    repaint(png, [crowd])
    absent = [s['id'] for s in segments[:-1]]

    train = load(dataset, 0, LoadPanopticTrainAnnotations)
    assert train['gt_masks'].masks.shape == (0, 64, 96)
    assert train['gt_bboxes'].numpy().shape == (0, 4)
    assert train['gt_bboxes_labels'].tolist() == []
    assert train['gt_ignore_flags'].tolist() == []
    (message, kwargs), = warnings
    assert message == (
        f"Panoptic PNG '{png}' lacks {len(absent)} of the {len(segments)} "
        f"segment ids listed for it ({', '.join(map(str, absent))}); "
        'those segments are left out.')
    assert kwargs['level'] == 30  # logging.WARNING

    # evaluation keeps the crowd region, with the same (single) warning
    out = load(dataset, 0)
    assert out['gt_segment_ids'].tolist() == [crowd['id']]
    assert out['gt_is_thing'].tolist() == [True]  # by category
    assert np.array_equal(out['gt_masks'].masks[0].astype(bool), crowd['mask'])
    assert len(warnings) == 1


def test_a_crowd_region_missing_from_the_png_is_warned_about(
        tmp_path, warnings):
    dataset, segments = crowd_toy(tmp_path)
    png = dataset.get_data_info(0)['seg_map_path']
    repaint(png, segments[:-1])
    train = load(dataset, 0, LoadPanopticTrainAnnotations)
    assert np.array_equal(train['gt_masks'].masks.astype(bool),
                          np.stack([s['mask'] for s in segments[:-1]]))
    (message, _), = warnings
    assert message == (
        f"Panoptic PNG '{png}' lacks 1 of the {len(segments)} segment ids "
        f"listed for it ({segments[-1]['id']}); those segments are left out.")


def test_a_png_holding_no_listed_id_crowd_included_is_an_error(tmp_path):
    dataset, segments = crowd_toy(tmp_path)
    png = dataset.get_data_info(0)['seg_map_path']
    png_of_another_image(dataset, png)
    with pytest.raises(
            SampleContentError,
            match=re.escape(f"Panoptic PNG '{png}' holds none of the "
                            f'{len(segments)} segment ids listed for it (')):
        load(dataset, 0, LoadPanopticTrainAnnotations)


def swap_to_bgr(dataset, path):
    """The ids written as B + 256 G + 256^2 R: another encoding."""
    cv2.imwrite(path, cv2.imread(path)[..., ::-1])


def png_of_another_image(dataset, path):
    shutil.copyfile(dataset.get_data_info(2)['seg_map_path'], path)


@pytest.mark.parametrize('damage', [swap_to_bgr, png_of_another_image])
def test_all_absent_is_an_error_naming_the_png(toy, warnings, damage):
    dataset, images = toy
    png = dataset.get_data_info(0)['seg_map_path']
    damage(dataset, png)
    count = len(images[0]['segments'])
    with pytest.raises(SampleContentError) as err:
        load(dataset, 0)
    message = str(err.value)
    assert '\n' not in message
    assert re.fullmatch(
        re.escape(f"Panoptic PNG '{png}' holds none of the {count} segment "
                  'ids listed for it (') + r'.*' + ENCODING + r'\.', message)
    assert err.value.problems == [message[len('Panoptic PNG '):-1]]
    # what training counts and skips; what the tools print as one line
    assert isinstance(err.value, SampleLoadError)
    assert isinstance(err.value, UserError)
    assert warnings == []

    with pytest.raises(SampleContentError) as err:
        load(dataset, 0, LoadPanopticTrainAnnotations)
    assert osp.basename(png) in str(err.value)


def test_evaluation_stops_with_the_message(toy):
    dataset, _ = toy
    png = dataset.get_data_info(1)['seg_map_path']
    swap_to_bgr(dataset, png)
    dataset.pipeline = Compose(
        [dict(type=LoadImageFromFile),
         dict(type=LoadPanopticSegments)])
    dataset[0]
    with pytest.raises(
            SampleContentError,
            match=r'^CocoPanopticOVDataset: sample 1: Panoptic PNG ' +
            re.escape(f"'{png}' holds none of the")):
        dataset[1]


def test_a_png_of_another_size_is_a_content_error(toy):
    dataset, _ = toy
    info = dataset.get_data_info(0)
    write_panoptic_png(info['seg_map_path'], np.ones((10, 12), np.int64))
    with pytest.raises(
            SampleContentError,
            match=re.escape(f"'{info['seg_map_path']}' is 12x10 but its "
                            f"image '{info['img_path']}' is 96x64")):
        load(dataset, 0)
