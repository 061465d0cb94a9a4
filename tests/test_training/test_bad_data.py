"""Bad data does not stop training: rejected samples are replaced from the
same source and counted; a non-finite loss stops with a clear message."""
import json

import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.logging import MessageHub

from rap_sam.datasets import (ClipFrameSample, ConcatOVDataset,
                              FilterSmallSegments, GenerateTrainPrompts)
from rap_sam.datasets.skipped_samples import pop_skip_reason
from rap_sam.engine import NonFiniteLossError, check_losses_finite


def _segments(areas, size=32):
    masks = np.zeros((len(areas), size, size), dtype=np.uint8)
    for i, area in enumerate(areas):
        masks[i].flat[:area] = 1
    masks = BitmapMasks(masks, size, size)
    return dict(
        img=np.zeros((size, size, 3), np.uint8),
        img_path='x.jpg',
        img_shape=(size, size),
        gt_masks=masks,
        gt_bboxes=HorizontalBoxes.from_instance_masks(masks),
        gt_bboxes_labels=np.arange(len(areas)),
        gt_ignore_flags=np.zeros(len(areas), bool))


def test_image_whose_segments_all_vanish_is_rejected():
    assert FilterSmallSegments(min_area=1)(_segments([0, 0])) is None
    assert 'no segment' in pop_skip_reason()
    kept = FilterSmallSegments(min_area=5)(_segments([0, 3, 40]))
    assert kept['gt_bboxes_labels'].tolist() == [2]


def test_clip_keeps_a_track_large_in_some_frame():
    clip = {k: [v, v] for k, v in _segments([40, 2]).items()}
    clip['gt_instances_ids'] = [np.array([1, 2]), np.array([1, 2])]
    clip['gt_masks'][1] = clip['gt_masks'][1][[0]]
    for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags'):
        clip[key][1] = clip[key][1][[0]]
    clip['gt_instances_ids'][1] = np.array([1])
    out = FilterSmallSegments(min_area=5)(clip)
    assert [ids.tolist() for ids in out['gt_instances_ids']] == [[1], [1]]


def test_short_videos():
    frames = [dict(frame_id=i, img_id=i) for i in range(2)]
    info = dict(video_id=3, video_length=2, images=frames)
    out = ClipFrameSample(num_frames=2, interval=2)(info)
    assert out['frame_id'] == [0, 1]  # the interval shrinks to fit
    one = dict(video_id=4, video_length=1, images=frames[:1])
    assert ClipFrameSample(num_frames=2, interval=2)(one) is None
    assert 'has 1 frame' in pop_skip_reason()


def test_tiny_segments_get_no_prompts():
    out = GenerateTrainPrompts(
        num_prompts=6, min_area=32)(
            _segments([10, 200]))
    assert out['prompt_indices'].tolist() == [1] * 6
    assert out['num_tiny_segments'] == 1
    assert GenerateTrainPrompts(min_area=32)(_segments([10, 5])) is None
    assert 'to prompt' in pop_skip_reason()


@TRANSFORMS.register_module()
class VanishSegmentsOf(BaseTransform):
    """As if a crop of image ``img_id`` had caught only void."""

    def __init__(self, img_id):
        self.img_id = img_id

    def transform(self, results):
        if results['img_id'] == self.img_id:
            keep = np.zeros(len(results['gt_bboxes_labels']), bool)
            for key in ('gt_masks', 'gt_bboxes', 'gt_bboxes_labels',
                        'gt_ignore_flags'):
                results[key] = results[key][keep]
        return results


def test_dataset_replaces_rejected_samples_from_the_same_source(
        toy_root, tmp_path):
    from mmcv.transforms import LoadImageFromFile, TransformBroadcaster
    from mmdet.datasets.transforms import (LoadTrackAnnotations, PackDetInputs,
                                           PackTrackInputs)

    from rap_sam.datasets import (CocoPanopticOVDataset,
                                  LoadPanopticTrainAnnotations,
                                  YouTubeVISOVDataset)

    # A YouTube-VIS file where video 1 has a single frame.
    raw = json.load(open(f'{toy_root}/data/youtube_vis_2019/train.json'))
    raw['videos'][0]['file_names'] = raw['videos'][0]['file_names'][:1]
    for ann in raw['annotations']:
        if ann['video_id'] == raw['videos'][0]['id']:
            for key in ('segmentations', 'bboxes', 'areas'):
                ann[key] = ann[key][:1]
    ann_file = tmp_path / 'short.json'
    ann_file.write_text(json.dumps(raw))

    coco = dict(
        type=CocoPanopticOVDataset,
        data_root=f'{toy_root}/data/coco/',
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        pipeline=[
            dict(type=LoadImageFromFile),
            dict(type=LoadPanopticTrainAnnotations),
            dict(type=VanishSegmentsOf, img_id=1),
            dict(type=FilterSmallSegments),
            dict(type=PackDetInputs)
        ])
    videos = dict(
        type=YouTubeVISOVDataset,
        data_root=f'{toy_root}/data/'
        'youtube_vis_2019/',
        ann_file=str(ann_file),
        data_prefix=dict(img_path='train/JPEGImages'),
        pipeline=[
            dict(type=ClipFrameSample, num_frames=2, interval=2),
            dict(
                type=TransformBroadcaster,
                transforms=[
                    dict(type=LoadImageFromFile),
                    dict(type=LoadTrackAnnotations, with_mask=True)
                ]),
            dict(type=PackTrackInputs)
        ])
    dataset = ConcatOVDataset([coco, videos], data_tags=('coco', 'yt19'))
    sample = dataset[0]['data_samples']  # COCO image 1
    assert sample.metainfo['data_tag'] == 'coco'
    assert sample.img_id != 1
    assert 'no segment' in sample.metainfo['skipped_samples'][0]
    assert sample.gt_instances.labels.max() >= 102  # stuff, joint labels
    np.random.seed(0)
    clip = dataset[len(dataset.datasets[0])]['data_samples']  # the short one
    assert clip.metainfo['data_tag'] == 'yt19'
    assert len(clip) == 2
    assert all('has 1 frame' in r for r in clip.metainfo['skipped_samples'])


def test_nonfinite_loss_names_iteration_and_source():
    MessageHub.get_current_instance().update_info('iter', 41)
    sample = DetDataSample(metainfo=dict(img_path='bad.jpg'))
    check_losses_finite(dict(loss_mask=torch.tensor(1.)), 'sam', [sample])
    with pytest.raises(NonFiniteLossError) as err:
        check_losses_finite(
            dict(
                loss_mask=torch.tensor(1.),
                loss_dice=torch.tensor(float('nan'))), 'sam', [sample])
    message = str(err.value)
    assert 'iteration 42' in message and "'sam'" in message
    assert 'loss_dice=nan' in message and 'bad.jpg' in message
