"""Input conversion rules and refusals of rap_sam.apis.inputs: images by
dtype, the pixel limit read from file headers, video arrays and files, and
prompt shapes. No model runs here."""
import ast
import os
import os.path as osp
import struct
import subprocess
import sys
import warnings
import zlib

import cv2
import numpy as np
import pytest
from helpers import REPO

from rap_sam.apis import InputError, check_image_size, read_image
from rap_sam.apis.inputs import (DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, check_int,
                                 check_number, check_prompts, iter_frames,
                                 max_pixels_limit)


@pytest.fixture(scope='module')
def img():
    """A 40 x 30 BGR image using the whole [0, 255] range."""
    rng = np.random.default_rng(0)
    out = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    out[0, 0] = (0, 128, 255)
    return out


# ----------------------------------------------------------------------
# pixel values by dtype
# ----------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.float16])
def test_float_images_in_0_1_are_scaled_by_255(img, dtype):
    assert np.array_equal(read_image((img / 255.).astype(dtype)), img)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_float_images_in_0_255_are_rounded(img, dtype):
    assert np.array_equal(read_image(img.astype(dtype)), img)
    ramp = np.array([[0., 2.4, 2.6, 254.5, 255.]], dtype)
    assert read_image(ramp)[0, :, 0].tolist() == [0, 2, 3, 254, 255]


def test_uint16_images_keep_the_high_byte_as_opencv_reads_them(img, tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, img.shape)
    wide = (img.astype(np.uint16) << 8) + noise.astype(np.uint16)
    assert np.array_equal(read_image(wide), img)
    # The same rule as reading the 16-bit file with OpenCV.
    path = str(tmp_path / 'sixteen.png')
    cv2.imwrite(path, wide)
    assert np.array_equal(read_image(path), read_image(wide))


@pytest.mark.parametrize('dtype', [np.int64, np.int32, np.int16, np.int8])
def test_other_integers_in_0_255_are_taken_as_they_are(img, dtype):
    small = (img // 2).astype(dtype)  # int8 holds 0..127
    assert np.array_equal(read_image(small), img // 2)


@pytest.mark.parametrize('array, message', [
    (np.full((4, 4, 3), 255.5), r'float64 with values from 255\.5 to '
     r'255\.5'),
    (np.full((4, 4, 3), -0.1), 'from -0.1 to -0.1'),
    (np.full((4, 4, 3), 256.), 'from 256 to 256'),
    (np.full((4, 4, 3), np.nan), 'NaN or infinite'),
    (np.full((4, 4, 3), np.inf, np.float32), 'NaN or infinite'),
    (np.full((4, 4, 3), 300, np.int32), 'int32 with values from 300 to 300'),
    (np.full((4, 4, 3), -1, np.int64), 'from -1 to -1'),
    (np.ones((4, 4, 3), bool), r'not an array of pixel values \(dtype bool'),
    (np.ones((4, 4, 3), complex), 'dtype complex128'),
    (np.array([['a', 'b']]), 'not an array of pixel values'),
])
def test_ambiguous_pixel_values_are_refused(array, message):
    with pytest.raises(InputError, match=message) as err:
        read_image(array)
    if 'values from' in message:
        assert 'expected uint8 [0, 255], uint16, or float in [0, 1] or ' \
            '[0, 255]' in str(err.value)


# ----------------------------------------------------------------------
# files and bytes, bounded before decoding
# ----------------------------------------------------------------------
def _png_chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data)))


def _png_header(width, height):
    """A PNG claiming ``width x height`` RGB, cut short after the first
    row of pixel data: any decoder that got this far would fail."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b'\x00' * (1 + 3 * width))
    return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) +
            _png_chunk(b'IDAT', row))


def _jpeg_claiming(width, height):
    """A real small JPEG whose frame header (SOF0) is patched to claim
    ``width x height``."""
    data = bytearray(
        cv2.imencode('.jpg', np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def test_files_and_bytes_decode_alike(img, tmp_path):
    path = tmp_path / 'img.png'
    cv2.imwrite(str(path), img)
    assert np.array_equal(read_image(str(path)), img)
    assert np.array_equal(read_image(path), img)  # a pathlib.Path
    assert np.array_equal(read_image(path.read_bytes()), img)
    assert check_image_size(path.read_bytes()) == (40, 30)
    assert check_image_size(str(path)) == (40, 30)


def test_a_pil_image_is_turned_upright_as_its_file_is(tmp_path):
    """A phone photo (EXIF orientation 6: turn 90 degrees clockwise) came
    out on its side as a PIL image, while its path or bytes (cv2) were
    upright."""
    from PIL import Image
    stored = np.zeros((100, 150, 3), np.uint8)
    stored[:, :50] = (255, 0, 0)  # the stored left third, blue (BGR)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / 'phone.jpg'
    Image.fromarray(stored[..., ::-1]).save(path, exif=exif, quality=95)
    by_path = read_image(str(path))
    assert by_path.shape == (150, 100, 3)  # cv2 turns it upright
    with Image.open(path) as photo:
        by_pil = read_image(photo)
    assert by_pil.shape == (150, 100, 3)
    assert np.abs(by_pil.astype(int) - by_path).mean() < 2
    assert by_pil[:50, :, 0].mean() > 200  # the left third is now the top


@pytest.mark.parametrize('data, size', [
    (_png_header(12000, 12000), '12000 x 12000 pixels (144.0 megapixels)'),
    (_jpeg_claiming(10000, 10000), '10000 x 10000 pixels (100.0 megapixels)'),
    (_png_header(20000, 20000), 'more than 179.0 megapixels'),
])
def test_huge_images_are_refused_from_the_header(tmp_path, data, size):
    """The 20000 x 20000 PNG asked for 38.8 GB and the 10000 x 10000 JPEG
    for > 16 GB when decoded; the header says enough to refuse them."""
    path = tmp_path / 'huge.img'
    path.write_bytes(data)
    limit = f'above the limit of {DEFAULT_MAX_PIXELS / 1e6:g} megapixels'
    for source in (str(path), data):
        with pytest.raises(InputError, match='limit') as err:
            read_image(source)
        assert size in str(err.value) and limit in str(err.value)
        assert 'max_pixels= or RAP_SAM_MAX_PIXELS' in str(err.value)
        if isinstance(source, bytes):  # a sentence, not a path, begins it
            assert str(err.value)[:1].isupper()
    assert str(path) in str(
        pytest.raises(InputError, read_image, str(path)).value)


def test_the_pixel_limit_is_an_argument_or_an_environment_variable(
        img, tmp_path, monkeypatch):
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS
    assert read_image(path, max_pixels=1200).shape == (30, 40, 3)
    for source in (path, img):
        with pytest.raises(
                InputError,
                match='40 x 30 pixels .* limit of '
                '0.001199 megapixels'):
            read_image(source, max_pixels=1199)
    monkeypatch.setenv(MAX_PIXELS_ENV, '1000')
    assert max_pixels_limit() == 1000
    with pytest.raises(InputError, match='above the limit'):
        read_image(path)
    assert read_image(path, max_pixels=5000).shape == (30, 40, 3)
    for bad in ('many', '0', '1.5'):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(InputError, match='RAP_SAM_MAX_PIXELS must be'):
            read_image(path)
    with pytest.raises(InputError, match='max_pixels must be'):
        read_image(path, max_pixels='1000')


@pytest.mark.parametrize('data', [
    b'', b'just some text\n', b'\x89PNG\r\n\x1a\n',
    _png_header(64, 64), b'\xff\xd8\xff' + b'\x00' * 50
])
def test_empty_text_and_truncated_files_are_not_images(tmp_path, data):
    path = tmp_path / 'upload.png'
    path.write_bytes(data)
    for source in (str(path), data):
        with pytest.raises(InputError, match='Cannot read .* as an image'):
            read_image(source)


def test_what_is_no_image_source_is_refused():
    with pytest.raises(InputError, match='No image given'):
        read_image(None)
    with pytest.raises(InputError, match='a path or its bytes, got int'):
        check_image_size(3)


# ----------------------------------------------------------------------
# videos
# ----------------------------------------------------------------------
def test_a_single_image_is_not_a_video(img):
    with pytest.raises(
            InputError,
            match=r'must be \[T, H, W, 3\].* got '
            r'shape \(30, 40, 3\)'):
        list(iter_frames(img))
    with pytest.raises(InputError, match='a row of a colour image'):
        list(iter_frames(img.tolist()))
    with pytest.raises(InputError, match='got bytes'):
        list(iter_frames(b'\x00' * 10))
    with pytest.raises(
            InputError,
            match=r'^A video is a file, a folder of frames, a camera index, '
            r'a stream URL, a \[T, H, W, 3\] array or a list of frames, got '
            r'object\.$'):
        list(iter_frames(object()))  # was a TypeError: not iterable


def test_video_frames_follow_the_image_rules(img):
    frames = list(iter_frames([img / 255., img.astype(np.uint16) * 257]))
    assert len(frames) == 2
    assert all(np.array_equal(f, img) for f in frames)
    assert [f.shape for f in iter_frames(img[None, ..., :1])] == [(30, 40, 3)]
    with pytest.raises(InputError, match='above the limit'):
        list(iter_frames([img], max_pixels=100))
    # A list of file names: "not an array of pixel values (dtype <U36)".
    with pytest.raises(InputError) as err:
        list(iter_frames(['frames/000.jpg', 'frames/001.jpg']))
    assert str(err.value) == (
        'Frame 0 of the video is a path (frames/000.jpg): pass the folder of '
        'frames as the video, or the frames as arrays or PIL images '
        '(read_image reads a file).')


def _mjpeg(path, *images):
    with open(path, 'wb') as f:
        for image in images:
            f.write(cv2.imencode('.jpg', image)[1].tobytes())
    return str(path)


def test_mjpeg_with_two_frame_sizes_is_refused(tmp_path):
    """OpenCV scales the 80 x 96 frames to the first frame's 64 x 48
    without a word; the JPEG headers tell."""
    small = np.full((48, 64, 3), 60, np.uint8)
    large = np.full((96, 80, 3), 120, np.uint8)
    path = _mjpeg(tmp_path / 'two.mjpeg', small, small, large, small)
    frames = iter_frames(path)
    assert [next(frames).shape for _ in range(2)] == [(48, 64, 3)] * 2
    with pytest.raises(
            InputError,
            match='Frame 2 of .*two.mjpeg is 80 x 96 pixels, the '
            'first was 64 x 48: all frames of a video must have '
            'one size'):
        next(frames)


def test_mjpeg_of_one_size_is_read_whole(tmp_path):
    images = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(4)]
    frames = list(iter_frames(_mjpeg(tmp_path / 'one.mjpeg', *images)))
    assert len(frames) == 4
    for frame, image in zip(frames, images):
        assert frame.shape == (48, 64, 3)
        assert np.abs(frame.astype(int) - image).max() <= 2  # JPEG's loss


def test_video_files_above_the_pixel_limit_are_refused(tmp_path):
    path = _mjpeg(tmp_path / 'clip.mjpeg', np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(
            InputError,
            match='The video .*clip.mjpeg is 64 x 48 '
            'pixels .* above the limit'):
        list(iter_frames(path, max_pixels=64 * 48 - 1))
    assert len(list(iter_frames(path, max_pixels=64 * 48))) == 1


def _mp4(path, frames=20):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path.read_bytes()


_READ_VIDEOS = """
import sys
from rap_sam.apis import InputError
from rap_sam.apis.inputs import iter_frames
for path in sys.argv[1:]:
    try:
        print(len(list(iter_frames(path))), 'frames')
    except InputError as err:
        print('InputError:', err)
"""


def test_damaged_videos_are_one_message_without_ffmpeg_lines(tmp_path):
    """FFmpeg printed '[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] moov atom not
    found' and OpenCV's AVI reader 'Unexpected element. Expected: LIST'
    before the InputError; a fresh process, as a user's, prints neither."""
    mp4 = _mp4(tmp_path / 'good.mp4')
    avi = _mjpeg_avi(tmp_path / 'good.avi')
    (tmp_path / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'cut.mp4').write_bytes(mp4[:len(mp4) // 2])  # no moov atom
    (tmp_path / 'cut.avi').write_bytes(avi[:300])  # the header breaks off
    names = ['empty.mp4', 'cut.mp4', 'cut.avi', 'good.mp4', 'good.avi']
    result = subprocess.run(
        [sys.executable, '-c', _READ_VIDEOS] +
        [str(tmp_path / n) for n in names],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    refusal = ('InputError: Cannot open {} as a video (not a video file, a '
               'damaged one, or a codec OpenCV cannot read).')
    assert result.stdout.splitlines() == [
        refusal.format(tmp_path / 'empty.mp4'),
        refusal.format(tmp_path / 'cut.mp4'),
        refusal.format(tmp_path / 'cut.avi'), '20 frames', '20 frames'
    ]


def _mjpeg_avi(path):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path.read_bytes()


def _video_captures(tree):
    """The function holding each call of VideoCapture (None: the module)."""
    owner = {}
    for func in ast.walk(tree):  # outer functions first, inner ones after
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner.update((node, func.name) for node in ast.walk(func))
    return [
        owner.get(node) for node in ast.walk(tree)
        if isinstance(node, ast.Call) and 'VideoCapture' in (
            getattr(node.func, 'attr', None), getattr(node.func, 'id', None))
    ]


def test_every_video_capture_is_opened_quietly():
    """One opener for files, cameras and streams: a plain
    cv2.VideoCapture elsewhere in rap_sam/ would print FFmpeg's lines."""
    found = []
    for folder, _, files in os.walk(osp.join(REPO, 'rap_sam')):
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                with open(path) as f:
                    found += [(osp.relpath(path, REPO), func)
                              for func in _video_captures(ast.parse(f.read()))]
    assert found == [('rap_sam/apis/inputs.py', 'open_video_quietly')]


# ----------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------
def test_one_flat_prompt_is_one_row():
    points, boxes = check_prompts([3, 4], [1, 2, 30, 20], 40, 30)
    assert points.tolist() == [[3, 4]] and boxes.tolist() == [[1, 2, 30, 20]]
    points, boxes = check_prompts(np.array([[3, 4], [5, 6]]), None, 40, 30)
    assert points.dtype == np.float32 and points.tolist() == [[3, 4], [5, 6]]


@pytest.mark.parametrize('points, boxes, message', [
    ([3, 4, 5, 6], None, r'Points \(x, y\) must be \[N, 2\] rows .* got '
     r'shape \(4,\)'),
    (None, [1, 2, 3, 4, 5, 6, 7, 8], r'Boxes .* must be \[N, 4\] .* got '
     r'shape \(8,\)'),
    (None, [[1, 2], [3, 4]], r'must be \[N, 4\]'),
    ([True, False], None, 'got booleans'),
    ([[True, 3]], None, 'got booleans'),
    (np.ones((2, 2), bool), None, 'got booleans'),
    ([[1, 2], [3]], None, 'must be numbers in rows'),
    ('3,4', None, 'must be numbers'),
    ([[1 + 2j, 3]], None, 'must be numbers'),
])
def test_ambiguous_prompts_are_refused(points, boxes, message):
    with pytest.raises(InputError, match=message):
        check_prompts(points, boxes, 40, 30)


@pytest.mark.parametrize('points, message', [
    ([[1e40, 5]], r'The point \(1e\+40, 5\) is outside the image, which is '
     r'40 x 30 pixels\.'),
    ([[3, -1e300]], r'The point \(3, -1e\+300\) is outside the image'),
    (np.array([[np.longdouble('1e4000'), 5]]), 'The point .* is outside the '
     'image'),
    ([[np.inf, 5]], r'Points \(x, y\) contain non-finite numbers \(NaN or '
     r'infinity\)\.'),
    ([[3, float('nan')]], 'non-finite numbers'),
])
def test_far_and_non_finite_points_are_told_apart(points, message):
    """1e40 overflowed float32 to inf: numpy warned 'overflow encountered
    in cast' and the API called a finite number non-finite."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(InputError, match=message):
            check_prompts(points, None, 40, 30)


def test_boxes_beyond_float32_are_clipped_to_the_image():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        points, boxes = check_prompts(
            None, [[0, 0, 1e40, 1e40], [-1e300, 2, 20, 1e300]], 40, 30)
    assert boxes.dtype == np.float32 and points.dtype == np.float32
    assert boxes.tolist() == [[0, 0, 40, 30], [0, 2, 20, 30]]
    with pytest.raises(
            InputError,
            match=r'The box \(1e\+40, 0, 2e\+40, 5\) is outside the image'):
        check_prompts(None, [[1e40, 0, 2e40, 5]], 40, 30)
    with pytest.raises(InputError, match='non-finite'):
        check_prompts(None, [[0, 0, np.inf, 5]], 40, 30)


# ----------------------------------------------------------------------
# keywords
# ----------------------------------------------------------------------
@pytest.mark.parametrize('value, message', [
    ('2', r"chunk_frames must be a whole number >= 1, got '2' \(str\)"),
    (2.0, 'got 2.0 \\(float\\)'),
    (True, 'got True \\(bool\\)'),
    (0, 'chunk_frames must be >= 1, got 0'),
])
def test_whole_number_keywords_are_checked(value, message):
    with pytest.raises(InputError, match=message):
        check_int(value, 'chunk_frames')


def test_number_keywords_are_checked():
    assert check_number(np.float32(0.5), 'score_thr') == 0.5
    assert check_int(np.int64(3), 'n') == 3
    for value, message in (('0.5', r"got '0.5' \(str\)"),
                           (1.5, r'must be in \[0, 1\], got 1.5'),
                           (float('nan'), 'got nan'), (False, 'bool')):
        with pytest.raises(InputError, match=message):
            check_number(value, 'score_thr')
