"""RapSAMVideo on whole videos: the YouTube-VIS results file is byte for
byte what the former whole-video evaluation wrote (kept below as the
oracle), for long videos (several clips of 5, unevenly cut) and short ones
(clips of 3)."""
import copy
import hashlib

import pytest
import torch
from helpers import build_model, load_config
from mmcv.transforms import LoadImageFromFile, TransformBroadcaster
from mmdet.datasets.transforms import (LoadTrackAnnotations, PackTrackInputs,
                                       Resize)
from mmdet.registry import DATASETS, METRICS
from mmdet.structures import TrackDataSample
from mmengine.dataset import pseudo_collate

from rap_sam.models.utils import match_queries, split_video
from rap_sam.testing import make_youtube_vis


def former_predict(model, batch_inputs, batch_data_samples):
    """The evaluation as it was before the clip linker: every clip's mask
    logits kept until the end of the video, then fused frame by frame with
    the video's mean class scores."""
    num_frames = batch_inputs.size(1)
    clip_size = (
        model.clip_size
        if num_frames > model.small_video_frames else model.clip_size_small)
    cls_sum, iou_sum, masks, previous = 0, 0, [], None
    clips = split_video(num_frames, clip_size)
    for start, end in clips:
        clip_samples = [
            TrackDataSample(video_data_samples=s[start:end])
            for s in batch_data_samples
        ]
        cls_scores, clip_masks, ious, queries = model._clip_outputs(
            model.extract_feat(batch_inputs[:, start:end]), clip_samples)
        if previous is not None:
            index = torch.stack(
                [match_queries(p, q) for p, q in zip(previous, queries)])
            cls_scores, clip_masks, ious, queries = (
                torch.stack([x[i] for x, i in zip(tensor, index)])
                for tensor in (cls_scores, clip_masks, ious, queries))
        previous = queries
        cls_sum = cls_sum + cls_scores
        iou_sum = iou_sum + ious
        masks.append(clip_masks.cpu())
    masks = torch.cat(masks, dim=2)
    return model.predict_frames(cls_sum / len(clips), masks,
                                iou_sum / len(clips), batch_data_samples, True)


def former_test_step(model, data):
    data = model.data_preprocessor(data, False)
    return former_predict(model, data['inputs'], data['data_samples'])


@pytest.fixture(scope='module')
def video_model():
    return build_model('rap_sam/eval_rap_sam_yt19.py')


# The data path as it was: every frame loaded and packed in one tensor.
WHOLE_VIDEO_PIPELINE = [
    dict(
        type=TransformBroadcaster,
        transforms=[
            dict(type=LoadImageFromFile),
            dict(type=Resize, scale=(64, 48), keep_ratio=True),
            dict(type=LoadTrackAnnotations, with_mask=True),
        ]),
    dict(type=PackTrackInputs),
]


def results_json(model,
                 root,
                 prefix,
                 step,
                 num_frames,
                 num_videos,
                 pipeline=None):
    """The server file the yt19 config's metric writes for toy videos of
    ``num_frames`` (resized to 64 x 48 at most), predicted by ``step``
    from the samples of ``pipeline`` (the config's by default)."""
    make_youtube_vis(
        root,
        num_videos=num_videos,
        num_frames=num_frames,
        seed=num_frames,
        splits=('valid', ))
    cfg = load_config('rap_sam/eval_rap_sam_yt19.py')
    cfg.test_dataloader.dataset.data_root = root
    cfg.test_dataloader.dataset.pipeline[0].transforms[1].scale = (64, 48)
    if pipeline is not None:
        cfg.test_dataloader.dataset.pipeline = pipeline
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    cfg.test_evaluator.outfile_prefix = prefix
    metric = METRICS.build(cfg.test_evaluator)
    metric.dataset_meta = dataset.metainfo
    for k in range(len(dataset)):
        with torch.no_grad():
            out = step(model, pseudo_collate([dataset[k]]))
        assert len(out[0]) == num_frames
        metric.process({}, [out[0].to_dict()])
    assert metric.evaluate(size=len(dataset)) == {}  # format_only
    with open(prefix + '.json', 'rb') as f:
        return f.read()


@pytest.mark.parametrize(
    'num_frames, num_videos',
    [
        (17, 1),  # clips of 5: 5, 4, 4, 4 frames
        (7, 1),  # a short video: clips of 3: 3, 2, 2 frames
    ])
def test_results_file_is_the_former_evaluations(video_model, tmp_path,
                                                num_frames, num_videos):
    root = str(tmp_path / 'data') + '/'
    want = results_json(video_model, root, str(tmp_path / 'former'),
                        former_test_step, num_frames, num_videos,
                        WHOLE_VIDEO_PIPELINE)
    got = results_json(video_model, root, str(tmp_path / 'now'),
                       lambda m, d: m.test_step(d), num_frames, num_videos)
    assert b'segmentations' in want
    assert hashlib.sha256(got).hexdigest() == \
        hashlib.sha256(want).hexdigest()


def test_dense_masks_are_the_former_evaluations(video_model):
    """Without ``rle_masks`` the frames get full-size boolean masks, equal to
    the former ones (boxes, scores, labels and ids too)."""
    import numpy as np
    from helpers import random_image, video_batch
    model = copy.deepcopy(video_model)
    model.test_cfg = dict(model.test_cfg, rle_masks=False)
    frames = np.stack([random_image(40, 56, seed=s) for s in range(8)])
    with torch.no_grad():
        want = former_test_step(model, video_batch(frames))[0]
        got = model.test_step(video_batch(frames))[0]
    for a, b in zip(got, want):
        a, b = a.pred_track_instances, b.pred_track_instances
        assert a.masks.dtype == torch.bool and a.masks.shape[1:] == (40, 56)
        for key in ('masks', 'bboxes', 'scores', 'labels', 'instances_id'):
            assert torch.equal(a.get(key), b.get(key)), key


class SlicedVideo:
    """A ``[T, 3, H, W]`` uint8 video that records the frames asked for,
    as a data path reading frames per clip would give them."""

    def __init__(self, frames):
        self.frames, self.asked = frames, []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        self.asked.append((index.start, index.stop))
        return self.frames[index]


def test_frames_are_normalised_one_clip_at_a_time(video_model):
    import numpy as np
    from helpers import random_image, video_batch
    frames = np.stack([random_image(32, 48, seed=s) for s in range(7)])
    data = video_batch(frames)
    video = data['inputs'][0] = SlicedVideo(data['inputs'][0])
    with torch.no_grad():
        want = video_model.test_step(video_batch(frames))[0]
        got = video_model.test_step(data)[0]
    assert video.asked == [(0, 3), (3, 5), (5, 7)]
    assert len(got) == 7
    for a, b in zip(got, want):
        a, b = a.pred_track_instances, b.pred_track_instances
        assert a.masks == b.masks and len(a.masks) > 0
        assert torch.equal(a.scores, b.scores)


def test_spilt_masks_file_is_removed(video_model, monkeypatch):
    """Every query's RLEs go to a temporary file while the video runs; it is
    closed (and so gone) after the video, also when the video fails."""
    import tempfile

    import numpy as np
    from helpers import random_image, video_batch

    from rap_sam.models.tracking import query_mask_spill
    opened, make = [], tempfile.TemporaryFile

    def temporary_file():
        opened.append(make())
        return opened[-1]

    monkeypatch.setattr(query_mask_spill.tempfile, 'TemporaryFile',
                        temporary_file)
    frames = np.stack([random_image(32, 48, seed=s) for s in range(4)])
    with torch.no_grad():
        out = video_model.test_step(video_batch(frames))[0]
    assert len(out) == 4 and len(opened) == 1
    assert opened[0].closed
    fusion = video_model.panoptic_fusion_head

    def fail(*args):
        raise RuntimeError('failed mid-video')

    monkeypatch.setattr(fusion, 'gather_instances', fail)
    with pytest.raises(RuntimeError, match='failed mid-video'):
        with torch.no_grad():
            video_model.test_step(video_batch(frames))
    assert len(opened) == 2 and opened[1].closed
