"""Bad data does not stop training: rejected samples are replaced from the
same source and counted; a non-finite loss stops with a clear message."""
import json
import os
import os.path as osp
import re
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.logging import MessageHub
from training_helpers import REPO

from rap_sam.datasets import (ClipFrameSample, ConcatOVDataset,
                              DatasetContentError, DatasetLayoutError,
                              FilterSmallSegments, GenerateTrainPrompts)
from rap_sam.datasets.data_checks import damaged_file
from rap_sam.datasets.skipped_samples import pop_skip_reason
from rap_sam.engine import (NonFiniteLossError, SkippedSamplesHook,
                            check_losses_finite)
from rap_sam.testing import make_coco_panoptic


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


# Missing and damaged files: skipped and counted, unless nearly all are bad.


def _image_bytes(ext):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    return cv2.imencode(ext, image)[1].tobytes()


def test_damaged_files_are_recognised(tmp_path):
    jpeg, png = _image_bytes('.jpg'), _image_bytes('.png')
    files = {
        'whole.jpg': jpeg,
        'padded.jpg': jpeg + b'\0' * 64,  # bytes after the end marker
        'whole.png': png,
        'cut.jpg': jpeg[:len(jpeg) * 2 // 3],
        'cut.png': png[:len(png) * 2 // 3],
        'empty.jpg': b'',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    problems = {
        name: damaged_file(str(tmp_path / name))
        for name in list(files) + ['gone.jpg']
    }
    assert problems['whole.jpg'] is None and problems['padded.jpg'] is None
    assert problems['whole.png'] is None
    assert problems['cut.jpg'].endswith('is a truncated JPEG')
    assert problems['cut.png'].endswith('is a truncated PNG')
    assert problems['empty.jpg'].endswith('is empty')
    assert problems['gone.jpg'].endswith('does not exist')


@pytest.fixture
def coco_copy(tmp_path):
    """4 COCO panoptic training images of our own to damage."""
    written = make_coco_panoptic(
        str(tmp_path / 'coco'), num_images=4, splits=('train2017', ))
    split = written['train2017']
    images = [
        osp.join(split['img_dir'], im['file_name']) for im in split['images']
    ]
    pngs = [
        osp.join(split['seg_dir'], im['file_name'].replace('.jpg', '.png'))
        for im in split['images']
    ]
    return str(tmp_path / 'coco') + '/', images, pngs


def _truncate(path):
    with open(path, 'rb+') as f:
        f.truncate(os.path.getsize(path) * 2 // 3)


def _coco_source(root, **kwargs):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets.transforms import PackDetInputs

    from rap_sam.datasets import (CocoPanopticOVDataset,
                                  LoadPanopticTrainAnnotations)
    coco = dict(
        type=CocoPanopticOVDataset,
        data_root=root,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(
            img='train2017/', seg='annotations/panoptic_train2017/'),
        pipeline=[
            dict(type=LoadImageFromFile),
            dict(type=LoadPanopticTrainAnnotations),
            dict(type=PackDetInputs)
        ])
    return ConcatOVDataset([coco], data_tags=('coco', ), **kwargs)


def test_samples_with_bad_files_are_skipped_and_named(coco_copy):
    root, images, pngs = coco_copy
    os.remove(images[0])
    _truncate(images[1])
    _truncate(pngs[2])
    dataset = _coco_source(root, max_bad_fraction=0.9, min_bad_samples=1000)
    reasons = []
    for idx in range(len(dataset)):
        sample = dataset[idx]['data_samples']
        assert sample.img_path == images[3]  # the one good image
        reasons += sample.metainfo['skipped_samples']
    assert all(r.startswith('bad file: ') for r in reasons)
    text = ' '.join(reasons)
    assert f"'{images[0]}' does not exist" in text
    assert f"'{images[1]}' is a truncated JPEG" in text
    assert f"'{pngs[2]}' is a truncated PNG" in text


def test_a_png_without_its_segments_is_skipped_and_counted(coco_copy):
    """A panoptic PNG in another id encoding (B + 256 G + 256^2 R) holds
    none of the ids listed for it: skipped and counted as a bad file."""
    root, images, pngs = coco_copy
    cv2.imwrite(pngs[0], cv2.imread(pngs[0])[..., ::-1])
    dataset = _coco_source(root, max_bad_fraction=0.9, min_bad_samples=1000)
    sample = dataset[0]['data_samples']
    assert sample.img_path != images[0]
    reasons = sample.metainfo['skipped_samples']
    assert reasons and all(
        r.startswith(f"bad file: '{pngs[0]}' holds none of the ")
        for r in reasons)
    assert 'id = R + 256 G + 256^2 B' in reasons[0]

    warned = []
    runner = SimpleNamespace(
        iter=0,
        logger=SimpleNamespace(warning=warned.append, info=lambda _: None))
    hook = SkippedSamplesHook()
    hook.after_train_iter(runner, 0, dict(data_samples=[sample]))
    assert hook.bad_files == {'coco': len(reasons)}
    assert warned == [f'Skipped a coco sample: {reasons[0]}']


def test_nearly_all_bad_stops_with_a_message(coco_copy):
    root, images, pngs = coco_copy
    for path in images[:3]:
        _truncate(path)
    dataset = _coco_source(root, min_bad_samples=5)
    with pytest.raises(
            DatasetContentError,
            match=r'coco: \d+ of the \d+ samples drawn had missing or '
            r'damaged files \(more than 50%\)'):
        for _ in range(100):
            dataset[0]
    for path in images[:3]:
        os.remove(path)
    with pytest.raises(
            DatasetLayoutError,
            match=r'3 of 4 images listed in .* are missing, e\.g\. .*'
            r'training skips samples with missing files while they are at '
            r'most 50% of them'):
        _coco_source(root)


def test_training_completes_over_bad_files(coco_copy, toy_root, tmp_path):
    """tools/train.py on data with a missing image, a truncated JPEG and a
    truncated panoptic PNG: the epoch completes, the log names the files
    and counts the skipped samples."""
    root, images, pngs = coco_copy
    os.remove(images[0])
    _truncate(images[1])
    _truncate(pngs[2])
    work_dir = tmp_path / 'work'
    data = 'train_dataloader.dataset.datasets'
    options = [
        'train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.train_cfg.num_points=256', f'{data}.2.times=1',
        f'{data}.0.data_root={root}', f'{data}.2.dataset.data_root={root}',
        f'{data}.1.dataset.data_root={toy_root}/data/youtube_vis_2019/',
        f'model.panoptic_head.ov_classifier_dir={toy_root}/embd'
    ]
    result = subprocess.run([
        sys.executable, 'tools/train.py',
        'configs/rap_sam/toy_rap_sam_train.py', '--work-dir',
        str(work_dir), '--cfg-options', *options
    ],
                            cwd=REPO,
                            env=dict(
                                os.environ,
                                PYTHONPATH=REPO,
                                OMP_NUM_THREADS='1'),
                            capture_output=True,
                            text=True,
                            timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'Traceback' not in log
    assert '1 of 4 images listed in' in log
    assert f"bad file: '{images[0]}' does not exist" in log
    assert f"bad file: '{images[1]}' is a truncated JPEG" in log
    assert f"bad file: '{pngs[2]}' is a truncated PNG" in log
    counted = re.findall(r"for missing or damaged files, total: \{([^}]*)\}",
                         log)
    assert counted and "'coco'" in counted[-1]
    assert osp.isfile(work_dir / 'epoch_1.pth')
