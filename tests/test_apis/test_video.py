"""segment_video / iter_video: equal to test_step for a short video, track
ids through chunks, every input form, and bad videos explained."""
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample, TrackDataSample

from rap_sam.apis import InputError


@pytest.fixture(scope='module')
def frames(photo):
    """A camera pan over the photo: 5 frames of 96 x 64 (two clips)."""
    return np.stack([photo[18:82, 10 * t:10 * t + 96] for t in range(5)])


def reference_batch(frames, scale):
    resized = [mmcv.imrescale(f, scale) for f in frames]
    h, w = resized[0].shape[:2]
    samples = [
        DetDataSample(
            metainfo=dict(
                img_id=i,
                frame_id=i,
                img_shape=(h, w),
                ori_shape=frames.shape[1:3],
                scale_factor=(w / frames.shape[2], h / frames.shape[1])))
        for i in range(len(frames))
    ]
    inputs = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)
    return dict(
        inputs=[inputs.contiguous()],
        data_samples=[TrackDataSample(video_data_samples=samples)])


def test_short_video_matches_test_step(video_predictor, frames):
    results = video_predictor.segment_video(frames, rle_masks=False)
    with torch.no_grad():
        expected = video_predictor.model.test_step(
            reference_batch(frames, video_predictor.scale))[0]
    assert len(results) == len(expected) == 5
    for got, want in zip(results, expected):
        got, want = got.pred_track_instances, want.pred_track_instances
        assert got.masks.shape[1:] == (64, 96)
        assert len(got) > 0
        for key in ('masks', 'labels', 'instances_id'):
            assert torch.equal(got.get(key), want.get(key)), key
        assert torch.allclose(got.scores, want.scores)


def test_video_chunks_are_the_model_inputs(video_predictor, frames):
    """What track_video and track_prompt read: the frames in order, each
    chunk as the data preprocessor makes the reference batch."""
    from rap_sam.apis.video import video_chunks
    chunks = list(video_chunks(video_predictor, frames, 2))
    assert [(c.start, len(c.frames), c.more)
            for c in chunks] == [(0, 2, True), (2, 2, True), (4, 1, False)]
    assert not any(c.whole_video for c in chunks)
    assert np.array_equal(
        np.stack([f for c in chunks for f in c.frames]), frames)
    model = video_predictor.model
    with torch.no_grad():
        want = model.data_preprocessor(
            reference_batch(frames, video_predictor.scale), False)
    got = torch.cat([c.inputs for c in chunks], dim=1)
    assert torch.equal(got, want['inputs'])
    assert [s.frame_id for c in chunks
            for s in c.samples[0]] == [0, 1, 2, 3, 4]
    (whole, ) = video_chunks(video_predictor, frames, 30)
    assert whole.whole_video and len(whole.frames) == 5


def test_chunk_is_linked_clip_by_clip(video_predictor, frames):
    """VideoChunk.link: the clips the model cuts (a whole short video in
    clips of 3, a chunk of a longer one in clips of 5), each with its frames'
    samples, features and outputs."""
    from rap_sam.apis.video import clip_linker, video_chunks
    model = video_predictor.model
    linker = clip_linker(model)
    (whole, ) = video_chunks(video_predictor, frames, 30)
    with torch.no_grad():
        clips = list(whole.link(model, linker))
    assert [(s, e) for s, e, *_ in clips] == [(0, 3), (3, 5)]
    for s, e, samples, feats, (cls_scores, masks, ious) in clips:
        assert len(samples) == 1
        assert samples[0].video_data_samples == \
            whole.samples[0].video_data_samples[s:e]
        assert feats.shape[0] == e - s
        num_queries = cls_scores.shape[1]
        assert masks.shape[:3] == (1, num_queries, e - s)
        assert ious.shape == (1, num_queries, 1)
    assert linker.num_clips == 2
    chunk = next(
        video_chunks(video_predictor, np.concatenate([frames] * 3), 10))
    assert not chunk.whole_video
    with torch.no_grad():
        assert [(s, e) for s, e, *_ in chunk.link(model, linker)] == [(0, 5),
                                                                      (5, 10)]
    assert linker.num_clips == 2  # a new window


def test_long_video_is_read_in_chunks(video_predictor, frames):
    read = []

    def stream():
        for frame in frames:
            read.append(1)
            yield frame

    results = video_predictor.iter_video(stream(), chunk_frames=2)
    _, first = next(results)
    # One chunk and one frame of look-ahead, not the whole video.
    assert len(read) == 3
    rest = [r for _, r in results]
    assert len(rest) == 4

    whole = video_predictor.segment_video(frames[:2], rle_masks=False)
    assert torch.equal(first.pred_track_instances.masks,
                       whole[0].pred_track_instances.masks)
    # A track id means one class for the whole video.
    label_of = {}
    for result in [first] + rest:
        inst = result.pred_track_instances
        assert len(inst.instances_id.unique()) == len(inst)
        for i, label in zip(inst.instances_id.tolist(), inst.labels.tolist()):
            assert label_of.setdefault(i, label) == label


def test_score_threshold_drops_instances(video_predictor, frames):
    results = video_predictor.segment_video(
        frames[:2], score_thr=0.25, rle_masks=False)
    for result in results:
        assert bool((result.pred_track_instances.scores >= 0.25).all())


def test_file_folder_and_array_inputs(video_predictor, frames, tmp_path):
    folder = tmp_path / 'frames'
    for i, frame in enumerate(frames[:2]):
        mmcv.imwrite(frame, str(folder / f'{i:05d}.png'))
    path = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 64))
    for frame in frames[:2]:
        writer.write(frame)
    writer.release()

    from_array = video_predictor.segment_video(
        list(frames[:2]), rle_masks=False)
    from_folder = video_predictor.segment_video(str(folder), rle_masks=False)
    from_file = video_predictor.segment_video(path, rle_masks=False)
    assert len(from_array) == len(from_folder) == len(from_file) == 2
    for a, b in zip(from_array, from_folder):
        assert torch.equal(a.pred_track_instances.masks,
                           b.pred_track_instances.masks)
    assert from_file[0].pred_track_instances.masks.shape[1:] == (64, 96)


def _file(path, data):
    path.write_bytes(data)
    return str(path)


def _folder(path, *shapes):
    path.mkdir()
    for i, shape in enumerate(shapes):
        mmcv.imwrite(np.zeros(shape, np.uint8), str(path / f'{i}.png'))
    return str(path)


@pytest.mark.parametrize('make, message', [
    (lambda d: str(d / 'missing.mp4'), 'Video not found'),
    (lambda d: _file(d / 'empty.mp4', b''), 'Cannot open .* as a video'),
    (lambda d: _file(d / 'junk.mp4', b'\x00junk' * 100),
     'Cannot open .* as a video'),
    (lambda d: _folder(d / 'none'), 'No images'),
    (lambda d: _folder(d / 'sizes', (32, 32, 3), (40, 32, 3)),
     'all frames of a video must have one size'),
    (lambda d: [], 'has no frames'),
    (lambda d: np.zeros((2, 8, 8, 5), np.uint8), 'shape'),
])
def test_bad_videos_are_explained(video_predictor, tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        video_predictor.segment_video(make(tmp_path))


def test_video_without_decodable_frames(video_predictor, tmp_path):
    """A container OpenCV opens but whose frames it cannot decode."""
    path = str(tmp_path / 'no_frames.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 5,
                             (32, 32))
    writer.release()
    if not osp.getsize(path):
        pytest.skip('OpenCV wrote nothing for an empty video')
    with pytest.raises(InputError, match='(has no frames|Cannot open)'):
        video_predictor.segment_video(path)


def test_a_single_image_is_not_a_video(video_predictor, frames):
    """A [H, W, 3] image would be read as H frames of [W, 3]."""
    with pytest.raises(InputError, match=r'must be \[T, H, W, 3\]'):
        video_predictor.segment_video(frames[0])


def test_float_frames_give_the_uint8_result(video_predictor, frames):
    expected = video_predictor.segment_video(frames[:2], rle_masks=False)
    got = video_predictor.segment_video(frames[:2] / 255., rle_masks=False)
    for a, b in zip(got, expected):
        assert torch.equal(a.pred_track_instances.masks,
                           b.pred_track_instances.masks)


@pytest.mark.parametrize('kwargs, message', [
    (dict(chunk_frames='2'), "chunk_frames must be a whole number >= 1, got "
     "'2'"),
    (dict(chunk_frames=0), 'chunk_frames must be >= 1'),
    (dict(score_thr='0.5'), r"score_thr must be a number in \[0, 1\], got "
     "'0.5'"),
    (dict(score_thr=1.5), r'score_thr must be in \[0, 1\]'),
])
def test_bad_keywords_are_explained_at_once(video_predictor, frames, kwargs,
                                            message):
    with pytest.raises(InputError, match=message):
        video_predictor.iter_video(frames, **kwargs)  # not when iterated
    with pytest.raises(InputError, match=message):
        video_predictor.segment_video(frames, **kwargs)


def test_video_frames_above_the_pixel_limit_are_refused(
        video_predictor, frames, monkeypatch):
    monkeypatch.setattr(video_predictor, 'max_pixels', 96 * 64 - 1)
    with pytest.raises(InputError, match='96 x 64 pixels .* above the limit'):
        video_predictor.segment_video(frames)


def test_a_video_model_refuses_to_segment_an_image(video_predictor):
    """It makes instances only: segment_image's result had no panoptic
    segments, and the demos failed on it with an AttributeError."""
    with pytest.raises(InputError) as err:
        video_predictor.segment_image(np.zeros((64, 96, 3), np.uint8))
    assert str(err.value).startswith(
        'This model makes no panoptic segments (its test_cfg has '
        'panoptic_on=False, as a video config has)')


def test_an_image_config_tracks_its_thing_classes(predictor, frames):
    """The COCO config (one model for images and video) tracks instances of
    its 80 thing classes, with one id per track through the frames."""
    results = list(predictor.iter_video(frames[:3], chunk_frames=3))
    assert len(results) == 3
    num_things = predictor.model.panoptic_fusion_head.num_things_classes
    assert num_things == 80
    ids = None
    for frame, result in results:
        instances = result.pred_track_instances
        assert len(instances) > 0
        assert bool((instances.labels < num_things).all())
        assert instances.masks.shape[-2:] == frame.shape[:2]
        got = sorted(instances.instances_id.tolist())
        ids = got if ids is None else ids
        assert got == ids


def test_a_chunk_larger_than_the_memory_is_refused(video_predictor, frames,
                                                   monkeypatch):
    """A chunk's frames are segmented together: chunk_frames the length of
    a long video was killed by the system for memory, without a word. At
    the 64 x 48 scale a frame is counted 128 * 64 * 48 bytes."""
    from rap_sam.apis import video
    per_frame = video.CHUNK_BYTES_PER_PIXEL * 64 * 48
    monkeypatch.setattr(video, 'available_memory', lambda: 10 * per_frame)
    results = list(video_predictor.iter_video(frames[:2], chunk_frames=10))
    assert len(results) == 2
    message = (r'^chunk_frames 11 would hold about 0\.0 GB at the 64x48 '
               r'scale \(0 MB a frame\), more than the 0\.0 GB available: '
               r'give at most 10 \(longer videos are tracked chunk by '
               r'chunk, the tracks linked across chunks\)\.$')
    with pytest.raises(InputError, match=message):
        video_predictor.iter_video(frames, chunk_frames=11)
    with pytest.raises(InputError, match=message):
        video_predictor.iter_track_prompt(
            frames, 0, points=[[10, 10]], chunk_frames=11)
    # Memory that cannot be read: no limit.
    monkeypatch.setattr(video, 'available_memory', lambda: None)
    assert video.check_chunk_frames(10**9, (64, 48)) == 10**9


def test_available_memory_is_linux_memavailable(monkeypatch):
    from rap_sam.apis import video
    from rap_sam.apis.video import available_memory
    monkeypatch.setattr(video, 'cgroup_memory_headroom', lambda: None)
    with open('/proc/meminfo') as f:
        listed = next(
            int(line.split()[1]) for line in f
            if line.startswith('MemAvailable:'))
    # Read a moment apart: within 256 MB of each other.
    assert abs(available_memory() - listed * 1024) < 256 * 2**20


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_counts_the_parents_and_the_page_cache(tmp_path):
    """A container's memory limit is often far below the machine's
    MemAvailable; the tightest of the cgroup and its parents counts, the
    reclaimable page cache not as used."""
    from rap_sam.apis.video import cgroup_memory_headroom
    root = tmp_path / 'cgroup'
    _write(tmp_path / 'self', '0::/box/job\n')
    _write(root / 'box' / 'memory.max', '1000000\n')
    _write(root / 'box' / 'memory.current', '400000\n')
    _write(root / 'box' / 'job' / 'memory.max', 'max\n')
    _write(root / 'box' / 'job' / 'memory.current', '300000\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) == 600000
    _write(root / 'box' / 'memory.stat',
           'anon 100\ninactive_file 250000\nactive_file 5\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) == 850000
    _write(root / 'box' / 'job' / 'memory.max', '500000\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) == 200000
    # Usage past the limit: nothing left, not a negative count.
    _write(root / 'box' / 'job' / 'memory.current', '900000\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) == 0


def test_cgroup_v1_limit_and_a_container_view(tmp_path):
    """cgroup v1 names its files otherwise and says "no limit" with a huge
    number; inside a container the listed path is missing under the mount,
    whose root is the container's own cgroup."""
    from rap_sam.apis.video import cgroup_memory_headroom
    root = tmp_path / 'cgroup'
    memory = root / 'memory'
    _write(tmp_path / 'self', '4:memory,hugetlb:/docker/abc\n1:cpu:/\n')
    _write(memory / 'memory.limit_in_bytes', '9223372036854771712\n')
    _write(memory / 'memory.usage_in_bytes', '5000\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) is None
    _write(memory / 'memory.limit_in_bytes', '8000\n')
    _write(memory / 'memory.stat', 'cache 9\ntotal_inactive_file 1000\n')
    assert cgroup_memory_headroom(str(tmp_path / 'self'), str(root)) == 4000
    # Nothing readable: no limit known.
    assert cgroup_memory_headroom(str(tmp_path / 'none'), str(root)) is None


def test_available_memory_takes_the_cgroup_limit(monkeypatch):
    from rap_sam.apis import video
    monkeypatch.setattr(video, 'cgroup_memory_headroom', lambda: 12345)
    assert video.available_memory() == 12345
    monkeypatch.setattr(video, 'cgroup_memory_headroom', lambda: 2**62)
    assert video.available_memory() < 2**62
