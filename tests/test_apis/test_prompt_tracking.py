"""track_prompt: a prompt on one frame, the object's mask in every frame
(forward and backward), the prompted frame answered as predict_prompts
answers it, and bad prompts or frame indices explained."""
import pickle

import cv2
import numpy as np
import pytest
import torch

from rap_sam.apis import InputError
from rap_sam.apis.prompt_tracking import FramePastEndError, match_tracks


@pytest.fixture(scope='module')
def frames(photo):
    """A camera pan over the photo: 5 frames of 96 x 64 (clips of 3 and 2,
    so a prompt on the last frame makes the video be read twice)."""
    return np.stack([photo[18:82, 10 * t:10 * t + 96] for t in range(5)])


@pytest.fixture(scope='module')
def tracks(video_predictor, frames) -> list:
    """Per frame, ``{query: mask}`` of every query's track, from
    segment_video with every (query, class) pair kept."""
    test_cfg = video_predictor.model.panoptic_fusion_head.test_cfg
    kept = test_cfg.get('max_per_image', 100)
    test_cfg['max_per_image'] = (
        video_predictor.model.panoptic_head.num_queries *
        video_predictor.model.num_classes)
    try:
        results = video_predictor.segment_video(frames, rle_masks=False)
    finally:
        test_cfg['max_per_image'] = kept
    return [
        dict(
            zip(r.pred_track_instances.query_indices.tolist(),
                r.pred_track_instances.masks)) for r in results
    ]


def test_match_tracks_known_answer():
    prompt = -torch.ones(2, 4, 4)
    prompt[0, :2, :2] = 1  # 4 pixels
    prompt[1, 2:, :] = 1  # 8 pixels
    queries = -torch.ones(3, 4, 4)
    queries[0, :2, :] = 1  # 8 pixels, 4 shared with prompt 0
    queries[1, 0, 0] = 1  # 1 pixel inside prompt 0
    queries[2, 3:, :] = 1  # 4 pixels inside prompt 1
    index, iou = match_tracks(prompt, queries)
    assert index.tolist() == [0, 2]
    assert torch.allclose(iou, torch.tensor([0.5, 0.5]))
    # A query the model thinks background loses to a sure one that
    # overlaps less; the IoU given is the chosen query's.
    index, iou = match_tracks(prompt, queries, torch.tensor([0.1, 0.9, 1.]))
    assert index.tolist() == [1, 2]
    assert torch.allclose(iou, torch.tensor([0.25, 0.5]))


def test_one_mask_per_frame_in_frame_order(video_predictor, frames):
    results = video_predictor.track_prompt(frames, 0, points=[[48, 30]])
    assert len(results) == 5
    for i, result in enumerate(results):
        assert result.metainfo['frame_id'] == i
        inst = result.pred_track_instances
        assert inst.masks.dtype == torch.bool
        assert inst.masks.shape == (1, 64, 96)
        assert inst.bboxes.shape == (1, 4)
        assert inst.instances_id.tolist() == [1]
    # One object, one track and one class through the video.
    assert len({
        tuple(r.pred_track_instances.query_indices.tolist())
        for r in results
    }) == 1
    assert len(
        {tuple(r.pred_track_instances.labels.tolist())
         for r in results}) == 1
    # The frames differ (a pan), so the masks are each frame's own.
    assert not all(
        torch.equal(results[0].pred_track_instances.masks,
                    r.pred_track_instances.masks) for r in results[1:])


def test_prompted_frame_is_predict_prompts(video_predictor, frames):
    points, boxes = [[30, 20], [70, 40]], [[5, 5, 60, 50]]
    results = video_predictor.track_prompt(
        frames, 2, points=points, boxes=boxes)
    video_predictor.set_image(frames[2])
    expected = video_predictor.predict_prompts(points, boxes).pred_instances
    got = results[2].pred_track_instances
    assert got.instances_id.tolist() == [1, 2, 3]
    assert torch.equal(got.masks, expected.masks)
    assert torch.equal(got.labels, expected.labels)
    # The frame's features come from a batch of 3 frames here, of one
    # there: equal to float rounding, which softmax of large logits shows.
    assert torch.allclose(
        got.scores, expected.scores, atol=1e-3), (
            got.scores - expected.scores)


@pytest.mark.parametrize('frame_index', [0, 2, 4])
def test_track_followed_forward_and_backward(video_predictor, frames,
                                             frame_index, tracks):
    """Every frame but the prompted one shows the matched query's track:
    after the prompt (frame 0), before it (frame 4, the last: a second pass)
    and both ways (frame 2)."""
    results = video_predictor.track_prompt(
        frames, frame_index, points=[[48, 30], [20, 50]])
    queries = results[0].pred_track_instances.query_indices.tolist()
    for i, result in enumerate(results):
        if i == frame_index:
            continue
        masks = result.pred_track_instances.masks
        for mask, query in zip(masks, queries):
            assert torch.equal(mask, tracks[i][query]), (i, query)


def test_match_iou_is_the_overlap_on_the_prompted_frame(
        video_predictor, frames):
    results = video_predictor.track_prompt(frames, 1, boxes=[0, 0, 96, 64])
    inst = results[1].pred_track_instances
    assert 0 <= float(inst.match_ious[0]) <= 1
    assert all(
        torch.equal(r.pred_track_instances.match_ious, inst.match_ious)
        for r in results)


def test_frame_iterator(video_predictor, frames):
    """An iterator of frames (read into a list, to be read twice for a
    prompt on the last frame) gives the array's results."""
    expected = video_predictor.track_prompt(frames, 4, points=[[48, 30]])
    got = video_predictor.track_prompt(
        iter(list(frames)), 4, points=[[48, 30]])
    assert len(got) == 5
    for a, b in zip(got, expected):
        assert torch.equal(a.pred_track_instances.masks,
                           b.pred_track_instances.masks)


def _one_line_error(call) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('frame_index', [-1, 5, 1.5, True, '0'])
def test_bad_frame_index(video_predictor, frames, frame_index):
    message = _one_line_error(lambda: video_predictor.track_prompt(
        frames, frame_index, points=[[10, 10]]))
    assert 'frame_index' in message


def test_frame_index_past_the_end_of_a_folder(video_predictor, frames,
                                              tmp_path):
    """A folder's length is known once it is read: the error says it."""
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f'{i:05d}.png'), frame)
    message = _one_line_error(lambda: video_predictor.track_prompt(
        str(tmp_path), 7, points=[[10, 10]]))
    assert 'frame_index 7' in message and 'it has 5 frames' in message


@pytest.mark.parametrize('as_folder', [False, True])
def test_frame_past_the_end_named_by_the_caller(video_predictor, frames,
                                                tmp_path, as_folder):
    """The API says ``frame_index``; a command line re-words the same error
    with its option (``named``), as demo/video_demo.py does with --frame.
    An array's length is checked before the model runs, a folder's once it
    is read."""
    video = frames
    if as_folder:
        for i, frame in enumerate(frames):
            cv2.imwrite(str(tmp_path / f'{i:05d}.png'), frame)
        video = str(tmp_path)
    with pytest.raises(FramePastEndError) as info:
        video_predictor.track_prompt(video, 6, points=[[10, 10]])
    err = info.value
    assert isinstance(err, InputError)
    assert (err.frame_index, err.num_frames) == (6, 5)
    assert str(err) == ("frame_index 6 is past the video's last frame (it "
                        'has 5 frames; 0 is the first).')
    named = err.named('--frame')
    assert type(named) is FramePastEndError
    assert str(named) == ("--frame 6 is past the video's last frame (it has "
                          '5 frames; 0 is the first).')
    # Picklable with its parts (as errors leave worker processes).
    again = pickle.loads(pickle.dumps(named))
    assert str(again) == str(named) and again.num_frames == 5


@pytest.mark.parametrize(
    'prompts, words',
    [(dict(points=[[100, 10]]), 'outside the image'),
     (dict(points=[[10, -1]]), 'outside the image'),
     (dict(boxes=[[200, 100, 300, 200]]), 'outside the image'),
     (dict(boxes=[[20, 20, 10, 30]]), 'x2 > x1'), (dict(), 'No prompt')])
def test_bad_prompt(video_predictor, frames, prompts, words):
    message = _one_line_error(
        lambda: video_predictor.track_prompt(frames, 0, **prompts))
    assert words in message


@pytest.mark.parametrize('video', [0, 'rtsp://127.0.0.1:9/x'])
def test_live_source_refused(video_predictor, video):
    message = _one_line_error(
        lambda: video_predictor.track_prompt(video, 0, points=[[1, 1]]))
    assert 'camera or stream' in message
