"""The video tab's frame picker: each video keeps a reader where its last
frame was read, so moving the slider forward decodes only the frames in
between, while every frame shown is exactly the one iter_frames numbers
(tracking starts from it)."""
import inspect
import threading
import types

import cv2
import gradio as gr
import numpy as np
import pytest

from rap_sam.apis import InputError, iter_frames
from rap_sam.apis.prompt_tracking import FramePastEndError

NUM_FRAMES = 40


def _write_noise(path, seed):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for t in range(NUM_FRAMES):
        rng = np.random.default_rng(seed * 1000 + t)
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return str(path)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """Six 40-frame MJPG avi of 64 x 48 noise, each frame its own seed."""
    root = tmp_path_factory.mktemp('noise')
    return [_write_noise(root / f'noise{i}.avi', i) for i in range(6)]


@pytest.fixture(scope='module')
def truth(videos):
    """Each video's frames as iter_frames numbers them, RGB."""
    return {v: [f[..., ::-1] for f in iter_frames(v)] for v in videos}


@pytest.fixture
def reads(monkeypatch):
    """iter_frames as the app calls it, counting the frames it decodes and
    keeping every generator it hands out (with its video)."""
    import app as app_module
    real = app_module.iter_frames
    log = types.SimpleNamespace(decoded=0, generators=[])

    def counted(video, max_pixels=None):
        with_count = _counting(real(video, max_pixels), log)
        log.generators.append((video, with_count))
        return with_count

    monkeypatch.setattr(app_module, 'iter_frames', counted)
    return log


def _counting(frames, log):
    try:
        for frame in frames:
            log.decoded += 1
            yield frame
    finally:
        frames.close()


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app with a stand-in for the video model: the frame picker reads
    frames only (the model's pixel limit is all it asks of it)."""
    from app import RapSAMApp
    app = RapSAMApp(None, lambda: types.SimpleNamespace(max_pixels=None),
                    str(tmp_path))
    # No frames kept: every request below goes to the readers.
    monkeypatch.setattr(app, 'FRAMES_KEPT', 0)
    yield app
    app.close()


def _open(reads, video=None):
    """The generators handed out (for ``video``) that are still open."""
    return [
        g for v, g in reads.generators
        if video in (None,
                     v) and inspect.getgeneratorstate(g) != inspect.GEN_CLOSED
    ]


def test_frames_are_exact_in_any_order(app, videos, truth):
    a, b = videos[:2]
    requests = [(a, 0), (a, 5), (b, 7), (a, 6), (b, 39), (a, 3), (a, 3),
                (b, 2), (a, 39), (b, 39), (a, 20), (b, 0), (a, 0), (b, 38)]
    for video, frame in requests:
        np.testing.assert_array_equal(
            app.frame_image(video, frame), truth[video][frame])


def test_moving_forward_decodes_only_the_frames_between(app, videos, reads):
    video = videos[0]
    app.frame_image(video, 20)
    assert reads.decoded == 21
    reads.decoded = 0
    app.frame_image(video, 25)
    assert reads.decoded == 5 and len(reads.generators) == 1
    app.frame_image(video, 26)
    assert reads.decoded == 6 and len(reads.generators) == 1
    # Back: read again from frame 0, the reader before closed.
    reads.decoded = 0
    app.frame_image(video, 10)
    assert reads.decoded == 11 and len(reads.generators) == 2
    assert _open(reads) == [reads.generators[1][1]]
    # Another video between does not lose this one's place.
    app.frame_image(videos[1], 4)
    reads.decoded = 0
    app.frame_image(video, 12)
    assert reads.decoded == 2


def test_a_frame_kept_is_not_read_again(app, videos, truth, reads,
                                        monkeypatch):
    monkeypatch.setattr(app, 'FRAMES_KEPT', 8)
    app.frame_image(videos[0], 30)
    decoded = reads.decoded
    np.testing.assert_array_equal(
        app.frame_image(videos[0], 30), truth[videos[0]][30])
    assert reads.decoded == decoded == 31
    # Only the frame asked for is kept, not those read on the way.
    assert list(app._frames) == [(videos[0], 30)]


def test_a_frame_past_the_end_is_the_same_message(app, videos, truth, reads):
    video = videos[0]
    message = ("Frame 40 is past the video's last frame (it has 40 "
               'frames; 0 is the first).')
    for before in (None, 10, 39):  # from a new reader, behind, at the end
        if before is not None:
            app.frame_image(video, before)
        with pytest.raises(FramePastEndError) as err:
            app.frame_image(video, 40)
        assert str(err.value) == message
        assert _open(reads, video) == []  # the reader that ended let go
    np.testing.assert_array_equal(app.frame_image(video, 2), truth[video][2])
    # As the page says it.
    _, _, _, state = app.load_video(video)
    with pytest.raises(gr.Error) as err:
        app.show_frame(video, 45, state)
    assert err.value.message == message.replace('40', '45', 1)


def test_a_video_cut_short_says_so_as_before(app, videos, truth, reads,
                                             tmp_path):
    data = open(videos[0], 'rb').read()
    cut = tmp_path / 'cut.avi'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError) as direct:
        list(iter_frames(str(cut)))
    readable = [f[..., ::-1] for f in _frames_before_error(str(cut))]
    assert 0 < len(readable) < NUM_FRAMES
    np.testing.assert_array_equal(
        app.frame_image(str(cut), 3), truth[videos[0]][3])
    for frame in (len(readable) + 2, len(readable) + 9):
        with pytest.raises(InputError) as err:
            app.frame_image(str(cut), frame)
        assert str(err.value) == str(direct.value)
        assert _open(reads) == []
    # The reader starts again: the frames before the cut still show.
    np.testing.assert_array_equal(
        app.frame_image(str(cut), 1), truth[videos[0]][1])


def _frames_before_error(video):
    frames = []
    try:
        for frame in iter_frames(video):
            frames.append(frame)
    except InputError:
        pass
    return frames


def test_readers_beyond_the_limit_are_closed(app, videos, truth, reads):
    assert app.READERS_KEPT == 4
    for video in videos:  # six videos
        np.testing.assert_array_equal(
            app.frame_image(video, 3), truth[video][3])
    assert list(app._readers) == videos[2:]
    assert {v for v, _ in reads.generators} == set(videos)
    assert [v for v, _ in _open_pairs(reads)] == videos[2:]
    # The oldest read again: a new reader, and now the third is the oldest.
    reads.decoded = 0
    app.frame_image(videos[0], 5)
    assert reads.decoded == 6
    assert [v for v, _ in _open_pairs(reads)] == videos[3:] + videos[:1]
    app.close()
    assert _open(reads) == [] and not app._readers


def _open_pairs(reads):
    return [(v, g) for v, g in reads.generators
            if inspect.getgeneratorstate(g) != inspect.GEN_CLOSED]


def test_two_sessions_read_one_video_at_once(app, videos, truth):
    """One generator cannot be read by two threads (ValueError): the
    sessions on one video take turns, each getting its own frames."""
    video = videos[0]
    wants = [list(range(0, NUM_FRAMES, 3)), list(range(NUM_FRAMES - 1, 0, -4))]
    got, failures = [[], []], []
    start = threading.Barrier(2)

    def session(i):
        try:
            start.wait()
            for _ in range(3):
                for frame in wants[i]:
                    got[i].append((frame, app.frame_image(video, frame)))
        except BaseException as err:  # said by the test, not lost
            failures.append(err)

    threads = [threading.Thread(target=session, args=(i, )) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    for i in (0, 1):
        assert [f for f, _ in got[i]] == wants[i] * 3
        for frame, image in got[i]:
            np.testing.assert_array_equal(image, truth[video][frame])


def test_readers_of_many_videos_at_once(app, videos, truth, reads):
    """Sessions on more videos than readers kept: a reader closed for
    another video while its session waited for it still gives the right
    frame, and none is left open."""
    failures = []

    def session(video):
        try:
            for frame in (5, 12, 30, 2, 31):
                np.testing.assert_array_equal(
                    app.frame_image(video, frame), truth[video][frame])
        except BaseException as err:
            failures.append(err)

    threads = [
        threading.Thread(target=session, args=(v, )) for v in videos * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(app._readers) == app.READERS_KEPT
    still_open = [v for v, _ in _open_pairs(reads)]
    assert sorted(still_open) == sorted(app._readers)


def _refusal(call, *args) -> str:
    with pytest.raises(gr.Error) as err:
        call(*args)
    assert err.value.print_exception is False
    return err.value.message


def test_a_frame_far_past_the_end_is_said_without_reading(
        app, videos, truth, reads):
    """A frame number far past the count the video's file says is refused
    before any frame is decoded (it read the whole video); nearer the end
    the frames are read and the answer is the reader's, exact (OpenCV's
    count is approximate for some containers)."""
    from app import FRAME_COUNT_SLACK
    video = videos[0]
    far = NUM_FRAMES + FRAME_COUNT_SLACK
    said = ("Frame {} is past the video's last frame (its file says it has "
            f'{NUM_FRAMES} frames; 0 is the first).')
    for state in (app.new_clicks(), app.load_video(video)[3]):
        reads.decoded, opened = 0, len(reads.generators)
        for frame in (far, 10**9, 10**30):
            assert _refusal(app.show_frame, video, frame,
                            state) == said.format(frame)
        assert reads.decoded == 0 and len(reads.generators) == opened
    # The last frame read as the reader says it: the frames are read.
    assert _refusal(
        app.show_frame, video, far - 1,
        state) == (f"Frame {far - 1} is past the video's last frame (it has "
                   f'{NUM_FRAMES} frames; 0 is the first).')
    assert reads.decoded > 0
    # Valid frames as before, from a new session too.
    for state in (state, app.new_clicks()):
        shown, note, _ = app.show_frame(video, NUM_FRAMES - 1, state)
        np.testing.assert_array_equal(shown, truth[video][NUM_FRAMES - 1])


def test_a_frame_past_the_end_of_a_video_whose_file_says_no_count(
        app, videos, truth, reads, monkeypatch):
    """A container that does not say its frame count: after the page's
    upload the frames counted then answer exactly, unread; a session
    without it (an API call) reads no further than --max-frames."""
    import app as app_module
    monkeypatch.setattr(app_module, 'source_info', lambda video: (None, None))
    monkeypatch.setattr(app, 'max_frames', 50)
    video = videos[1]
    _, _, note, state = app.load_video(video)
    assert f'frame 0 of {NUM_FRAMES}' in note
    reads.decoded = 0
    assert _refusal(app.show_frame, video, NUM_FRAMES, state) == (
        f"Frame {NUM_FRAMES} is past the video's last frame (it has "
        f'{NUM_FRAMES} frames; 0 is the first).')
    assert reads.decoded == 0
    message = ('Frame {} is past the last frame the app reads (49: it '
               'tracks at most 50 frames, --max-frames): pick an earlier '
               'frame.')
    for frame in (50, 10**9):
        assert _refusal(app.show_frame, video, frame,
                        app.new_clicks()) == message.format(frame)
    assert reads.decoded == 0
    # Below it, read to the end as before.
    assert 'it has 40 frames' in _refusal(app.show_frame, video, 49,
                                          app.new_clicks())
    shown, _, _ = app.show_frame(video, 39, app.new_clicks())
    np.testing.assert_array_equal(shown, truth[video][39])


def test_a_video_too_long_is_refused_before_its_frames_are_read(
        app, videos, reads, monkeypatch):
    """As the page's upload refuses it: an API call for one of its frames
    decodes none."""
    monkeypatch.setattr(app, 'max_frames', 30)
    message = (f'{videos[2]} has 40 frames; the app tracks at most 30 '
               '(--max-frames): cut it shorter, or track it with '
               'demo/video_demo.py.').replace(videos[2], 'noise2.avi')
    assert _refusal(app.load_video, videos[2]) == message
    assert _refusal(app.show_frame, videos[2], 39, app.new_clicks()) == message
    assert reads.decoded == 0
