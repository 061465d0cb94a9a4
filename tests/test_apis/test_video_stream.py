"""RapSAMPredictor.stream (one clip of latency, ids through the stream) and
segment_video(rle_masks=True) (compact results, lossless)."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from rap_sam.apis import InputError


@pytest.fixture(scope='module')
def frames(photo):
    """A camera pan over the photo: 7 frames of 96 x 64 (a clip of 5 and
    one of 2 when streamed)."""
    return np.stack([photo[18:82, 8 * t:8 * t + 96] for t in range(7)])


def test_stream_has_one_clip_of_latency(video_predictor, frames):
    read = []

    def camera():
        for frame in frames:
            read.append(1)
            yield frame

    results = video_predictor.stream(camera())
    _, first = next(results)
    # The linker's clip (5 frames) and one frame of look-ahead.
    assert video_predictor.model.clip_size == 5
    assert len(read) == 6
    rest = [r for _, r in results]
    assert len(rest) == 6
    expected = [
        r for _, r in video_predictor.iter_video(frames, chunk_frames=5)
    ]
    for got, want in zip([first] + rest, expected):
        got, want = got.pred_track_instances, want.pred_track_instances
        for key in ('masks', 'labels', 'instances_id'):
            assert torch.equal(got.get(key), want.get(key)), key


def test_stream_chunk_frames(video_predictor, frames):
    read = []

    def camera():
        for frame in frames:
            read.append(1)
            yield frame

    results = video_predictor.stream(camera(), chunk_frames=2)
    next(results)
    assert len(read) == 3


def test_rle_masks_are_the_dense_masks(video_predictor, frames):
    dense = video_predictor.segment_video(frames[:3], rle_masks=False)
    compact = video_predictor.segment_video(frames[:3], rle_masks=True)
    assert len(dense) == len(compact) == 3
    for d, c in zip(dense, compact):
        d, c = d.pred_track_instances, c.pred_track_instances
        assert isinstance(c.masks, list) and len(c.masks) == len(d) > 0
        assert all(isinstance(m['counts'], bytes) for m in c.masks)
        assert c.masks[0]['size'] == [64, 96]
        decoded = mask_util.decode(c.masks).transpose(2, 0, 1).astype(bool)
        assert np.array_equal(decoded, d.masks.numpy())
        for key in ('labels', 'instances_id', 'scores'):
            assert torch.equal(c.get(key), d.get(key)), key


def test_rle_masks_must_be_a_bool(video_predictor, frames):
    with pytest.raises(InputError, match='rle_masks must be True or False'):
        video_predictor.segment_video(frames[:2], rle_masks='yes')
