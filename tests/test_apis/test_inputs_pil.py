"""PIL images handed to the API: read in RGB order and turned into the BGR
uint8 arrays the model's pipeline expects, every PIL mode by PIL's own
conversion or, for 16-bit and float data, by the array rules of
:func:`rap_sam.apis.inputs.as_bgr_image`."""
import io
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from test_inputs import _png_header

from rap_sam.apis import InputError, read_image
from rap_sam.apis.inputs import DEFAULT_MAX_PIXELS, as_bgr_image, iter_frames

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # in BGR


def _colours(bgr):
    """The distinct BGR pixels of ``bgr``, as tuples in row order."""
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
    return [tuple(p) for p in bgr.reshape(-1, 3).tolist()]


@pytest.mark.parametrize('mode, value', [
    ('RGB', (255, 0, 0)),
    ('RGBA', (255, 0, 0, 128)),
    ('RGBX', (255, 0, 0, 0)),
    ('CMYK', (0, 255, 255, 0)),
])
def test_a_red_pil_image_is_red(mode, value):
    """np.asarray took PIL's RGB as BGR: red came out blue."""
    img = Image.new(mode, (8, 6), value)
    bgr = read_image(img)
    assert bgr.shape == (6, 8, 3)
    assert set(_colours(bgr)) == {RED}


def test_a_pil_image_keeps_its_pixels_in_place():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)
    bgr = read_image(Image.fromarray(rgb))
    assert np.array_equal(bgr, rgb[..., ::-1])
    bgr[0, 0] = 0  # a copy of its own, not PIL's read-only buffer
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], -1)
    assert np.array_equal(read_image(Image.fromarray(rgba)), rgb[..., ::-1])


def test_palette_images_give_their_palette_colours():
    """The indices are no grey levels: index 2 is the palette's blue."""
    img = Image.new('P', (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    img.putdata([0, 1, 2])
    assert _colours(read_image(img)) == [RED, GREEN, BLUE]
    # A transparent palette entry (tRNS bytes): the colour, no warning.
    img.info['transparency'] = b'\xff\x00\xff'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert _colours(read_image(img)) == [RED, GREEN, BLUE]
    pa = img.convert('PA')
    assert pa.mode == 'PA'
    assert _colours(read_image(pa)) == [RED, GREEN, BLUE]


def test_palette_png_file_and_pil_image_agree(tmp_path):
    img = Image.new('P', (3, 1))
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 0, 0] + [0] * 759)
    img.putdata([0, 1, 2])
    path = str(tmp_path / 'palette.png')
    img.save(path)
    with Image.open(path) as opened:
        assert opened.mode == 'P'
        assert np.array_equal(read_image(opened), read_image(path))
    assert _colours(read_image(path)) == [(30, 20, 10), (50, 100, 200),
                                          (0, 0, 0)]


@pytest.mark.parametrize(
    'mode, values, grey',
    [
        ('L', [0, 77, 255], [0, 77, 255]),
        ('LA', [(0, 255), (77, 0), (255, 30)], [0, 77, 255]),
        ('1', [0, 1, 0], [0, 255, 0]),
        ('I;16', [0, 0xAB12, 0xFFFF], [0, 0xAB, 0xFF]),  # the high byte
        ('I;16B', [0, 0xAB12, 0xFFFF], [0, 0xAB, 0xFF]),
        ('I', [0, 77, 255], [0, 77, 255]),
        ('F', [0., 0.5, 1.], [0, 128, 255]),  # [0, 1] times 255
        ('F', [0., 77.4, 254.6], [0, 77, 255]),  # [0, 255] rounded
    ])
def test_grey_pil_modes_follow_the_array_rules(mode, values, grey):
    img = Image.new(mode, (3, 1))
    img.putdata(values)
    bgr = read_image(img)
    assert bgr.shape == (1, 3, 3)
    assert _colours(bgr) == [(g, g, g) for g in grey]


def test_a_16_bit_png_reads_alike_as_a_file_and_as_a_pil_image(tmp_path):
    wide = np.array([[0, 0xAB12, 0x0100, 0xFFFF]], np.uint16)
    path = str(tmp_path / 'sixteen.png')
    cv2.imwrite(path, wide)
    with Image.open(path) as img:
        assert img.mode.startswith('I;16')
        assert np.array_equal(read_image(img), read_image(path))
    assert read_image(path)[0, :, 0].tolist() == [0, 0xAB, 1, 0xFF]


@pytest.mark.parametrize('mode', ['YCbCr', 'HSV'])
def test_other_colour_modes_are_converted_by_pil(mode):
    img = Image.new('RGB', (4, 2), (200, 40, 10)).convert(mode)
    bgr = read_image(img)
    assert np.array_equal(bgr, np.asarray(img.convert('RGB'))[..., ::-1])
    b, g, r = bgr[0, 0].tolist()
    assert r > 150 and g < 80 and b < 60  # still the orange it was


def test_premultiplied_grey_is_its_grey():
    """PIL cannot convert 'La' to 'L' directly; opaque, it is its grey."""
    img = Image.new('La', (4, 2), (90, 255))
    assert set(_colours(read_image(img))) == {(90, 90, 90)}


@pytest.mark.parametrize('mode, values, message', [
    ('I', [0, 300], r'The image \(PIL mode I\) is int32 with values from '
     r'0 to 300; expected uint8'),
    ('F', [0., 255.5], r'The image \(PIL mode F\) is float32 with values '
     r'from 0 to 255\.5'),
    ('F', [0., float('nan')], r'The image \(PIL mode F\) contains NaN'),
])
def test_pil_data_outside_the_rules_is_refused(mode, values, message):
    img = Image.new(mode, (2, 1))
    img.putdata(values)
    with pytest.raises(InputError, match=message):
        read_image(img)


def test_a_huge_pil_image_is_refused_before_it_is_decoded(monkeypatch):
    """Image.open reads only the header; 144 megapixels are refused from
    it, and its pixels (432 MB) are never asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(_png_header(12000, 12000)))
    monkeypatch.setattr(img, 'load', lambda: pytest.fail('decoded'))
    with pytest.raises(
            InputError,
            match=r'The image is 12000 x 12000 pixels \(144\.0 '
            rf'megapixels\), above the limit of {DEFAULT_MAX_PIXELS / 1e6:g}'):
        read_image(img)
    small = Image.new('L', (40, 30))
    assert read_image(small, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(InputError, match='40 x 30 pixels'):
        read_image(small, max_pixels=1199)


def test_a_pil_image_of_a_damaged_file_is_one_error():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    jpeg = cv2.imencode('.jpg', noise)[1].tobytes()
    scan = jpeg.index(b'\xff\xda')  # the headers hold, the pixels stop
    img = Image.open(io.BytesIO(jpeg[:scan + 200]))
    with pytest.raises(
            InputError,
            match=r'^Cannot read the image \(a PIL image in mode RGB\): '
            r'PIL could not decode its pixels \(image file is truncated.*\); '
            r'convert it to RGB yourself, or pass the file\'s path if the '
            r'file is damaged\.$'):
        read_image(img)


def test_an_empty_pil_image_is_refused():
    with pytest.raises(InputError, match=r'The image is empty \(0 x 0'):
        read_image(Image.new('RGB', (0, 0)))


def test_pil_frames_are_video_frames_and_one_pil_image_is_no_video():
    frames = [Image.new('RGB', (4, 3), (255, 0, 0)), Image.new('L', (4, 3))]
    out = list(iter_frames(frames))
    assert [set(_colours(f)) for f in out] == [{RED}, {(0, 0, 0)}]
    with pytest.raises(
            InputError,
            match='A single image is not a video: '
            'use segment_image, or pass a list of frames'):
        list(iter_frames(frames[0]))
    with pytest.raises(InputError, match='The video frame is 4 x 3 pixels'):
        list(iter_frames(frames, max_pixels=11))


def test_arrays_are_still_taken_as_bgr():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255
    assert set(_colours(as_bgr_image(bgr))) == {BLUE}


def test_a_red_pil_image_reaches_the_model_as_red(predictor):
    """The data preprocessor turns BGR into RGB and normalises: the first
    (red) channel holds (255 - mean) / std, the others (0 - mean) / std."""
    img = predictor.read_image(Image.new('RGB', (150, 100), (255, 0, 0)))
    pre = predictor.model.data_preprocessor
    data = pre(predictor._batch(img), False)['inputs'][0]
    mean, std = pre.mean.flatten(), pre.std.flatten()
    for channel, value in enumerate((255, 0, 0)):
        expected = float((value - mean[channel]) / std[channel])
        inside = data[channel, :60, :90]  # the resized image, not the pad
        assert inside.min().item() == pytest.approx(expected, abs=1e-4)
        assert inside.max().item() == pytest.approx(expected, abs=1e-4)
