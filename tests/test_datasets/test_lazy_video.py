"""The yt19 data path reads a video's frames per clip (PackLazyTrackInputs
hands the model a LazyVideo): the same frames and metainfo as loading the
whole video with TransformBroadcaster + PackTrackInputs."""
import pickle
import re
from pathlib import Path

import pytest
import torch
from mmcv.transforms import LoadImageFromFile, TransformBroadcaster
from mmdet.datasets.transforms import (LoadTrackAnnotations, PackTrackInputs,
                                       Resize)

from rap_sam.datasets import (LazyVideo, PackLazyTrackInputs, SampleLoadError,
                              YouTubeVISOVDataset)
from rap_sam.testing import make_youtube_vis

FRAME_TRANSFORMS = [
    dict(type=LoadImageFromFile),
    dict(type=Resize, scale=(80, 48), keep_ratio=True),
]


def dataset(root, lazy, split='train'):
    if lazy:
        pipeline = [
            dict(type=PackLazyTrackInputs, transforms=FRAME_TRANSFORMS)
        ]
    else:
        pipeline = [
            dict(
                type=TransformBroadcaster,
                transforms=FRAME_TRANSFORMS +
                [dict(type=LoadTrackAnnotations, with_mask=True)]),
            dict(type=PackTrackInputs),
        ]
    return YouTubeVISOVDataset(
        data_root=root,
        ann_file=f'{split}.json',
        data_prefix=dict(img_path=f'{split}/JPEGImages'),
        test_mode=True,
        pipeline=pipeline)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ytvis')) + '/'
    written = make_youtube_vis(root, num_videos=2, num_frames=7, seed=4)
    return root, written


def test_clips_are_the_whole_videos_frames(toy):
    root, _ = toy
    whole, lazy = dataset(root, False), dataset(root, True)
    for k in range(len(whole)):
        want, got = whole[k], lazy[k]
        video = got['inputs']
        assert isinstance(video, LazyVideo) and len(video) == 7
        # Sent to the main process by the dataloader's workers.
        video = pickle.loads(pickle.dumps(video))
        for start, end in [(0, 5), (5, 7), (2, 3)]:
            frames, metas = video.read_clip(start, end)
            expected = want['inputs'][start:end]
            assert frames.dtype == torch.uint8
            assert torch.equal(frames, expected)
            # the same layout too: the model gets the same tensor
            assert frames.stride() == expected.stride()
            for meta, frame in zip(metas, want['data_samples'][start:end]):
                assert set(meta) == {'ori_shape', 'img_shape', 'scale_factor'}
                for key, value in meta.items():
                    assert value == frame.metainfo[key], key
        for a, b in zip(got['data_samples'], want['data_samples']):
            for key in ('img_id', 'img_path', 'frame_id', 'video_id',
                        'video_length', 'ori_video_length', 'ori_shape'):
                assert a.metainfo[key] == b.metainfo[key], key
            # the ground truth the video metrics read
            assert a.instances == b.instances and len(a.instances) > 0
            assert len(a.gt_instances) == 0


def test_unreadable_frame_is_named_when_read(tmp_path):
    root = str(tmp_path) + '/'
    written = make_youtube_vis(
        root, num_videos=1, num_frames=6, seed=1, splits=('valid', ))
    video = written['valid']['videos'][0]
    frame = Path(written['valid']['img_dir'], video['file_names'][4])
    frame.write_bytes(b'not a jpeg')
    lazy = dataset(root, True, 'valid')[0]['inputs']
    frames, _ = lazy.read_clip(0, 3)  # the frames before it still read
    assert len(frames) == 3
    with pytest.raises(
            SampleLoadError,
            match=rf"video {video['id']}: sample \(frame 4\) could not be "
            r'loaded: ' + re.escape(f"'{frame}' is not a readable image")):
        lazy.read_clip(3, 6)
