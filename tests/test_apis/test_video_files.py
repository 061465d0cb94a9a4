"""Damaged and unusual video files and frame folders, read as a user hands
them over: a file cut short or damaged part-way is an InputError naming the
frame where reading stopped (after the frames before it, which the
predictor and the demo still segment), while whole files whose container
only estimates its frame count read without one; odd frame folders are
read in number order or refused in one message."""
import json
import re
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, assert_user_error, run_script

from rap_sam.apis import InputError
from rap_sam.apis.inputs import _cut_short, iter_frames, open_video_quietly

YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'


def _write(path, fourcc, count, fps=10, size=(64, 48)):
    """A video of ``count`` noise frames (each compresses to about the same
    size, so a file cut in half holds about half the frames)."""
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for i in range(count):
        rng = np.random.default_rng(i)
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
    writer.release()
    return path.read_bytes()


def _boxes(data, start, end):
    pos = start
    while pos < end:
        size, kind = struct.unpack('>I4s', data[pos:pos + 8])
        yield kind, pos, size
        pos += size


def _shift_chunk_offsets(moov, by):
    moov = bytearray(moov)

    def walk(start, end):
        for kind, pos, size in _boxes(moov, start, end):
            if kind in (b'moov', b'trak', b'mdia', b'minf', b'stbl'):
                walk(pos + 8, pos + size)
            elif kind == b'stco':
                count, = struct.unpack('>I', moov[pos + 12:pos + 16])
                for at in range(pos + 16, pos + 16 + 4 * count, 4):
                    value, = struct.unpack('>I', moov[at:at + 4])
                    moov[at:at + 4] = struct.pack('>I', value + by)

    walk(0, len(moov))
    return bytes(moov)


def _faststart(data):
    """The mp4 with its index (moov) before the frames (mdat), as web and
    phone videos are laid out: a cut one still opens, claiming every
    frame."""
    parts = {
        kind: data[pos:pos + size]
        for kind, pos, size in _boxes(data, 0, len(data))
    }
    moov, mdat = parts.pop(b'moov'), parts.pop(b'mdat')
    moov = _shift_chunk_offsets(moov, len(moov))
    return b''.join(parts.values()) + moov + mdat


def _faststart_mp4(path, count):
    _write(path, 'mp4v', count)
    path.write_bytes(_faststart(path.read_bytes()))
    return path.read_bytes()


def _read_until_error(path):
    """The frames read before the InputError, and its message."""
    frames = []
    with pytest.raises(InputError) as err:
        for frame in iter_frames(str(path)):
            frames.append(frame)
    return frames, str(err.value)


CUT = (r'^The video (?P<path>.+) is cut short: reading stopped at frame '
       r'(?P<index>\d+) of the (?P<count>\d+) frames its header claims '
       r'\(the file ends before its header says it does: an interrupted '
       r'copy, download or recording\); copy or download it again\.$')


@pytest.mark.parametrize('name, make', [
    ('cut.avi', lambda p: _write(p, 'MJPG', 20)),
    ('cut.mp4', lambda p: _faststart_mp4(p, 20)),
    ('cut.mkv', lambda p: _write(p, 'MJPG', 20)),
])
def test_a_file_cut_short_names_where_reading_stopped(tmp_path, name, make):
    """An MJPEG avi of 20 frames cut to half its bytes gave 9 frames and
    no word; mp4 (index first) and mkv the same."""
    whole = tmp_path / f'whole{name[3:]}'
    data = make(whole)
    assert len(list(iter_frames(str(whole)))) == 20  # whole, no error
    cut = tmp_path / name
    cut.write_bytes(data[:len(data) // 2])
    frames, message = _read_until_error(cut)
    match = re.match(CUT, message)
    assert match, message
    assert match['path'] == str(cut) and match['count'] == '20'
    assert int(match['index']) == len(frames)
    assert 1 <= len(frames) < 20
    # What was read before the cut is the video's start, undamaged (the
    # last frame read may be a partly decoded one).
    for got, want in zip(frames[:-1], iter_frames(str(whole))):
        assert np.array_equal(got, want)


@pytest.mark.parametrize('ext, make', [
    ('avi', lambda p: _write(p, 'MJPG', 3)),
    ('mp4', lambda p: _write(p, 'mp4v', 3)),
    ('mp4', lambda p: _faststart_mp4(p, 3)),
    ('mkv', lambda p: _write(p, 'MJPG', 3)),
])
def test_a_cut_is_judged_by_the_containers_own_sizes(tmp_path, ext, make):
    """Cut by one byte, or inside the first header, the file is short;
    whole, or with bytes after its end that are none of its own (some
    cameras append data), it is not."""
    data = make(tmp_path / f'whole.{ext}')
    judged = {}
    for name, content in [('whole', data), ('one_byte', data[:-1]),
                          ('header', data[:14]),
                          ('trailing', data + b'\x00\x01\x02\x03' * 5),
                          ('trailing_text', data + b'recorded by CAM-01')]:
        path = tmp_path / f'{name}.{ext}'
        path.write_bytes(content)
        judged[name] = _cut_short(str(path))
    assert judged == dict(
        whole=False,
        one_byte=True,
        header=True,
        trailing=False,
        trailing_text=False)


def test_containers_without_sizes_are_not_judged(tmp_path):
    data = _write(tmp_path / 'whole.ts', 'mp4v', 3)
    (tmp_path / 'cut.ts').write_bytes(data[:len(data) // 2])
    assert not _cut_short(str(tmp_path / 'cut.ts'))
    assert not _cut_short(str(tmp_path / 'missing.avi'))


DAMAGED = (r'^The video (?P<path>.+) is damaged at frame (?P<index>\d+): '
           r'OpenCV cannot read on from there, though frames after it '
           r'exist; copy it again, or repair it by re-encoding \(e\.g\. '
           r'ffmpeg -i (?P=path) -c:v libx264 repaired\.mp4\)\.$')


@pytest.mark.parametrize('ext, fourcc, count, span', [
    ('mp4', 'mp4v', 20, 2000),
    ('mp4', 'mp4v', 60, 20000),
    ('mkv', 'mp4v', 60, 20000),
    ('avi', 'XVID', 60, 20000),
    ('ts', 'mp4v', 60, 20000),
])
def test_damage_in_the_middle_names_the_frame(tmp_path, ext, fourcc, count,
                                              span):
    """Bytes zeroed a third of the way in: reading stopped there (at frame
    3 of the 20 of the first mp4) without a word, though frames after the
    damage decode: the next read for the mp4 (after 29 failed ones for
    20000 bytes), a seek past the damage for the others."""
    whole = tmp_path / f'whole.{ext}'
    data = bytearray(_write(whole, fourcc, count))
    at = len(data) // 3
    data[at:at + span] = bytes(span)
    path = tmp_path / f'mid.{ext}'
    path.write_bytes(data)
    frames, message = _read_until_error(path)
    match = re.match(DAMAGED, message)
    assert match, message
    assert match['path'] == str(path)
    assert int(match['index']) == len(frames) and 1 <= len(frames) < count
    # The frames before the damaged bytes are the video's (those after
    # them may be decoded with errors before reading stops).
    intact = min(len(frames) - 1, count // 12)
    for got, want in zip(frames[:intact], iter_frames(str(whole))):
        assert np.array_equal(got, want)


LOST = (r'^The video (?P<path>.+) is damaged: (?P<read>\d+) of the '
        r'(?P<claimed>\d+) frames its header claims could be read \(OpenCV '
        r'passes over a frame it cannot find without a word, so the frames '
        r'after it were out of place\); copy it again, or repair it by '
        r're-encoding \(e\.g\. ffmpeg -i (?P=path) -c:v libx264 '
        r'repaired\.mp4\)\.$')


def test_an_avi_frame_passed_over_is_no_shorter_video(tmp_path):
    """A frame chunk whose tag is damaged: FFmpeg's AVI demuxer skips it
    and every read succeeds, 19 frames of 20 with the last 10 each one
    place early. Only the index's count tells."""
    whole = tmp_path / 'whole.avi'
    data = bytearray(_write(whole, 'MJPG', 20))
    pos = data.index(b'movi')  # the frames' list (00dc: a frame chunk)
    for _ in range(11):
        pos = data.index(b'00dc', pos + 1)
    data[pos:pos + 4] = b'xxxx'
    path = tmp_path / 'lost.avi'
    path.write_bytes(data)
    frames, message = _read_until_error(path)
    match = re.match(LOST, message)
    assert match, message
    assert match['path'] == str(path)
    assert (int(match['read']), int(match['claimed'])) == (19, 20)
    expected = list(iter_frames(str(whole)))
    assert len(frames) == 19
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected[:10]))
    assert all(
        np.array_equal(a, b) for a, b in zip(frames[10:], expected[11:]))


_READ_VIDEOS = """
import sys
from rap_sam.apis import InputError
from rap_sam.apis.inputs import iter_frames
for path in sys.argv[1:]:
    try:
        print(len(list(iter_frames(path))), 'frames')
    except InputError as err:
        print(str(err).split(':')[0].split(' at frame')[0])
"""


def test_damaged_files_print_nothing_but_the_message(tmp_path):
    """FFmpeg's own lines ('partial file', 'File ended prematurely',
    'Error at MB') stay off stderr in a user's process."""
    data = _write(tmp_path / 'w.avi', 'MJPG', 20)
    (tmp_path / 'cut.avi').write_bytes(data[:len(data) // 2])
    data = _faststart_mp4(tmp_path / 'w.mp4', 20)
    (tmp_path / 'cut.mp4').write_bytes(data[:len(data) // 2])
    data = _write(tmp_path / 'w.mkv', 'MJPG', 20)
    (tmp_path / 'cut.mkv').write_bytes(data[:len(data) // 2])
    data = bytearray(_write(tmp_path / 'w2.mp4', 'mp4v', 20))
    data[len(data) // 3:len(data) // 3 + 2000] = bytes(2000)
    (tmp_path / 'mid.mp4').write_bytes(data)
    names = ['cut.avi', 'cut.mp4', 'cut.mkv', 'mid.mp4', 'w.mp4']
    result = subprocess.run(
        [sys.executable, '-c', _READ_VIDEOS] +
        [str(tmp_path / n) for n in names],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO)
    assert (result.returncode, result.stderr) == (0, '')
    assert result.stdout.splitlines() == [
        f'The video {tmp_path}/cut.avi is cut short',
        f'The video {tmp_path}/cut.mp4 is cut short',
        f'The video {tmp_path}/cut.mkv is cut short',
        f'The video {tmp_path}/mid.mp4 is damaged', '20 frames'
    ]


def test_an_mp4_cut_before_its_index_cannot_be_opened(tmp_path):
    """OpenCV's writer puts the index last: a cut file has none."""
    data = _write(tmp_path / 'whole.mp4', 'mp4v', 20)
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(data[:len(data) * 9 // 10])
    with pytest.raises(InputError) as err:
        list(iter_frames(str(cut)))
    assert str(err.value) == (
        f'Cannot open {cut} as a video (not a video file, a damaged one, or '
        'a codec OpenCV cannot read).')


@pytest.mark.parametrize('fourcc, ext', [('mp4v', 'mp4'), ('MJPG', 'avi'),
                                         ('XVID', 'avi'), ('MJPG', 'mkv')])
@pytest.mark.parametrize('count', [1, 2, 7])
def test_whole_files_read_every_frame_their_header_counts(
        tmp_path, fourcc, ext, count):
    """Measured: OpenCV's count of the files its writer makes is exact, so
    no tolerance is allowed for them."""
    path = tmp_path / f'clip.{ext}'
    _write(path, fourcc, count)
    cap = open_video_quietly(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == count
    cap.release()
    assert len(list(iter_frames(str(path)))) == count


def test_an_estimated_frame_count_is_no_damage(tmp_path):
    """MPEG-TS records no frame count: OpenCV estimates one from the
    duration, here ~100 for 2 frames. The file is whole, so it reads
    without an error."""
    path = tmp_path / 'clip.ts'
    _write(path, 'mp4v', 2, fps=30000 / 1001)
    cap = open_video_quietly(str(path))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) > 2  # the premise
    cap.release()
    assert len(list(iter_frames(str(path)))) == 2


@pytest.mark.parametrize('ext, fourcc', [('ts', 'mp4v'), ('mpg', 'mp4v'),
                                         ('flv', 'FLV1'), ('webm', 'VP80'),
                                         ('mov', 'mp4v')])
@pytest.mark.parametrize('fps', [23.976, 25, 59.94])
@pytest.mark.parametrize('count', [2, 7])
def test_whole_files_of_other_formats_read_without_error(
        tmp_path, ext, fourcc, fps, count):
    """Whatever count their header claims or OpenCV estimates, the seeks
    that look for frames past where reading stopped find none."""
    path = tmp_path / f'clip.{ext}'
    _write(path, fourcc, count, fps)
    assert len(list(iter_frames(str(path)))) == count


def test_a_truncated_transport_stream_ends_where_its_frames_end(tmp_path):
    """A format without a size in its header (MPEG-TS) cannot tell a cut
    from an end: its frames are what the file holds."""
    data = _write(tmp_path / 'whole.ts', 'mp4v', 20)
    cut = tmp_path / 'cut.ts'
    cut.write_bytes(data[:len(data) // 2])
    assert 1 <= len(list(iter_frames(str(cut)))) < 20


# ----------------------------------------------------------------------
# the predictor and the demo
# ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def cut_avi(tmp_path_factory):
    """An MJPEG avi of 20 frames cut in half, and how many frames read."""
    folder = tmp_path_factory.mktemp('cut')
    data = _write(folder / 'whole.avi', 'MJPG', 20, size=(96, 64))
    path = folder / 'cut.avi'
    path.write_bytes(data[:len(data) // 2])
    return str(path), len(_read_until_error(path)[0])


@pytest.mark.parametrize('chunk_frames', [30, 5, 4])
def test_the_predictor_segments_the_frames_before_the_cut(
        video_predictor, cut_avi, chunk_frames):
    """The chunk the cut falls in is segmented too, as the end of the
    video, before the error."""
    path, readable = cut_avi
    got = []
    stopped = f'stopped at frame {readable} of the 20 frames'
    with pytest.raises(InputError, match=stopped):
        for _, result in video_predictor.iter_video(path, chunk_frames):
            got.append(result)
    assert len(got) == readable
    # As if the video were the frames read: the same chunks, the last one
    # its end.
    frames, _ = _read_until_error(path)
    expected = video_predictor.segment_video(
        frames, chunk_frames, rle_masks=False)
    for a, b in zip(got, expected):
        assert torch.equal(a.pred_track_instances.masks,
                           b.pred_track_instances.masks)
        assert torch.equal(a.pred_track_instances.instances_id,
                           b.pred_track_instances.instances_id)


def test_stream_and_segment_video_end_with_the_message(video_predictor,
                                                       cut_avi):
    path, readable = cut_avi
    got = []
    with pytest.raises(InputError, match='is cut short'):
        for _, result in video_predictor.stream(path):
            got.append(result)
    assert len(got) == readable
    with pytest.raises(InputError, match='is cut short'):
        video_predictor.segment_video(path)


def test_video_demo_keeps_the_frames_before_the_cut(cut_avi, weights,
                                                    tmp_path):
    path, readable = cut_avi
    out = tmp_path / 'out'
    proc = run_script('demo/video_demo.py', path, YT19, '--weights', weights,
                      '--scale', '64', '48', '--out-dir', str(out))
    *progress, last = proc.stderr.splitlines()
    assert all(p.startswith('frames: ') for p in progress if p), proc.stderr
    proc.stderr = last + '\n'
    line = assert_user_error(proc)
    assert line == (
        f'error: The video {path} is cut short: reading stopped at frame '
        f'{readable} of the 20 frames its header claims (the file ends '
        'before its header says it does: an interrupted copy, download or '
        'recording); copy or download it again. Stopped: the '
        f'{readable} frames segmented '
        f'before it are in {out}/cut.mp4 and {out}/cut.json.')
    info = json.loads((out / 'cut.json').read_text())
    assert info['complete'] is False and info['num_frames'] == readable
    assert info['error'].startswith(f'The video {path} is cut short')
    cap = cv2.VideoCapture(str(out / 'cut.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == readable
    cap.release()


def test_a_stream_that_breaks_off_ends_the_video_there(tmp_path):
    """Live sources say no frame count: a cut file served over HTTP ends
    where its frames end, without an error."""
    import functools
    import http.server
    import threading

    data = _faststart_mp4(tmp_path / 'whole.mp4', 20)
    (tmp_path / 'cut.mp4').write_bytes(data[:len(data) // 2])
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/cut.mp4'
        assert 1 <= len(list(iter_frames(url))) < 20
    finally:
        server.shutdown()


# ----------------------------------------------------------------------
# frame folders
# ----------------------------------------------------------------------
def _frames_folder(path, names, shape=(48, 64, 3)):
    path.mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(path / name), np.full(shape, 20 * i, np.uint8))
    return path


def _levels(frames):
    return [int(f[0, 0, 0]) for f in frames]


def test_frames_are_taken_in_number_order(tmp_path):
    """1.png, 2.png, 10.png were read as 1, 10, 2: a scrambled video."""
    folder = _frames_folder(tmp_path / 'clip',
                            ['1.png', '2.png', '10.png', 'frame_9.png'])
    assert _levels(iter_frames(str(folder))) == [0, 20, 40, 60]
    padded = _frames_folder(tmp_path / 'padded',
                            [f'{i:05d}.jpg' for i in range(12)])
    assert len(list(iter_frames(str(padded)))) == 12
    assert _levels(iter_frames(str(padded)))[:3] == [0, 20, 40]


def test_hidden_files_and_folders_are_not_frames(tmp_path):
    """macOS leaves '._NAME' files beside each frame copied to a USB drive
    (not images): they stopped the video at its first frame."""
    folder = _frames_folder(tmp_path / 'clip', ['0.png', '1.png'])
    (folder / '._0.png').write_bytes(b'\x00\x05\x16\x07' + bytes(100))
    (folder / '.thumbnail.jpg').write_bytes(b'')
    (folder / 'notes.txt').write_text('shot on a tripod')
    (folder / 'extra.png').mkdir()
    assert _levels(iter_frames(str(folder))) == [0, 20]


def test_an_empty_frame_file_is_named(tmp_path):
    folder = _frames_folder(tmp_path / 'clip', ['0.png', '2.png'])
    (folder / '1.png').write_bytes(b'')
    frames = iter_frames(str(folder))
    assert next(frames).shape == (48, 64, 3)
    with pytest.raises(InputError) as err:
        next(frames)
    assert str(err.value) == (
        f'Cannot read {folder}/1.png as an image: the file is empty (0 '
        'bytes).')


def test_a_folder_without_frames_says_what_it_holds(tmp_path):
    folder = tmp_path / 'videos'
    folder.mkdir()
    _write(folder / 'a.mp4', 'mp4v', 2)
    with pytest.raises(InputError) as err:
        list(iter_frames(str(folder)))
    assert str(err.value) == (
        f'No images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff) in the '
        f'folder {folder}: a video is a folder of its frames or a video '
        'file (give the path of the file).')


def test_unicode_names_and_a_one_frame_video(tmp_path):
    folder = _frames_folder(tmp_path / 'vidéo 日本', ['кадр 1.png'])
    assert _levels(iter_frames(str(folder))) == [0]
    path = tmp_path / 'été 日本.mp4'
    _write(path, 'mp4v', 1)
    assert len(list(iter_frames(str(path)))) == 1


def test_video_demo_on_a_one_frame_video_with_a_unicode_name(
        weights, tmp_path):
    path = tmp_path / 'un été 日本.mp4'
    _write(path, 'mp4v', 1, size=(96, 64))
    out = tmp_path / 'sortie é'
    proc = run_script('demo/video_demo.py', path, YT19, '--weights', weights,
                      '--scale', '64', '48', '--out-dir', out)
    assert proc.returncode == 0, proc.stderr
    assert '1 frames, ' in proc.stdout
    info = json.loads((out / 'un été 日本.json').read_text())
    assert info['complete'] is True and info['num_frames'] == 1
    assert info['video'] == str(path)
    assert sorted(
        p.name for p in out.iterdir()) == ['un été 日本.json', 'un été 日本.mp4']
