"""Reading and checking what users hand to the API.

Every problem with the input raises :class:`InputError`, whose message is
meant for the user as it stands (the demos and the web app show it instead
of a stack trace). What is unambiguous is converted by a documented rule
(:func:`as_bgr_image`); the rest is refused.

Images are bounded before they are decoded: the size in a file's header is
checked against a pixel limit (:func:`max_pixels_limit`), so a small file
that would decode to gigabytes is refused instead.
"""
import io
import numbers
import os
import os.path as osp
import re
import shlex
import struct
import urllib.parse
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image, ImageOps

from rap_sam.utils.user_errors import UserError

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')

# 40 megapixels (e.g. 7300 x 5500): every camera photo, well below what the
# panoptic output at the original size costs memory for (see docs/usage.md).
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = 'RAP_SAM_MAX_PIXELS'

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]


class InputError(UserError, ValueError):
    """Bad input (file, frames or prompts), with a message for the user."""


class UnreadableImageError(InputError):
    """An image file that is no image, or a damaged or empty one (not one
    that is missing or above the pixel limit): what a reader of many files
    (int8 calibration) may skip."""


# ----------------------------------------------------------------------
# keyword checks
# ----------------------------------------------------------------------
def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; bools, strings and fractions are
    refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f'{name} must be a whole number >= {minimum}, got '
                         f'{value!r} ({type(value).__name__}).')
    if value < minimum:
        raise InputError(f'{name} must be >= {minimum}, got {value}.')
    return int(value)


def check_number(value, name: str, low: float = 0., high: float = 1.) -> float:
    """``value`` as a float in ``[low, high]``; bools and strings are
    refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f'{name} must be a number in [{low:g}, {high:g}], '
                         f'got {value!r} ({type(value).__name__}).')
    if not low <= value <= high:  # also refuses NaN
        raise InputError(f'{name} must be in [{low:g}, {high:g}], got '
                         f'{value!r}.')
    return float(value)


def available_devices() -> List[str]:
    """The torch devices this process can use: the CPU, each CUDA GPU,
    MPS."""
    import torch
    devices = ['cpu']
    if torch.cuda.is_available():
        devices += [f'cuda:{i}' for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        devices.append('mps')
    return devices


def check_device(device):
    """The ``torch.device`` for ``device`` (a string or a device); the GPU
    when None and there is one.

    Raises:
        InputError: Not a device name, or a device this process cannot use
            (the message lists those it can).
    """
    import torch
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    available = ', '.join(available_devices())
    if not isinstance(device, (str, torch.device)):
        raise InputError(f'device must be a string such as "cpu" or "cuda", '
                         f'got {device!r}; available here: {available}.')
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f'Unknown device {str(device)!r}; available here: '
                         f'{available}.')
    if dev.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if dev.index is not None and dev.index >= count or count == 0:
            raise InputError(f'Device {str(device)!r} is not available '
                             f'(PyTorch sees {count} CUDA GPUs); available '
                             f'here: {available}.')
    elif dev.type != 'cpu':
        try:
            torch.empty(0, device=dev)
        except Exception:
            raise InputError(f'Device {str(device)!r} is not available; '
                             f'available here: {available}.')
    return dev


def max_pixels_limit(max_pixels: Optional[int] = None) -> int:
    """The largest image (width x height) the API reads: ``max_pixels`` when
    given, else the environment variable ``RAP_SAM_MAX_PIXELS`` (how the
    tools and the web app are configured), else
    :data:`DEFAULT_MAX_PIXELS` (40 megapixels)."""
    if max_pixels is not None:
        return check_int(max_pixels, 'max_pixels')
    text = os.environ.get(MAX_PIXELS_ENV, '').strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1 or value != float(text):
        raise InputError(f'{MAX_PIXELS_ENV} must be a whole number of pixels '
                         f'>= 1 (e.g. 40000000), got {text!r}.')
    return value


def _sentence_start(name: str) -> str:
    """``name`` (``'the video x.mp4'``, a path) as the start of a message:
    its first letter a capital."""
    return name[:1].upper() + name[1:]


def check_pixels(width: int, height: int, what: str,
                 max_pixels: Optional[int]) -> None:
    """Refuse a ``width x height`` image above the pixel limit."""
    limit = max_pixels_limit(max_pixels)
    if width * height > limit:
        raise InputError(
            f'{what} is {width} x {height} pixels ({width * height / 1e6:.1f} '
            f'megapixels), above the limit of {limit / 1e6:g} megapixels: '
            f'downscale it, or raise the limit (max_pixels= or '
            f'{MAX_PIXELS_ENV}) if you have the memory.')


# ----------------------------------------------------------------------
# images
# ----------------------------------------------------------------------
def _pixels_to_uint8(img: np.ndarray, what: str) -> np.ndarray:
    """The conversion rules of :func:`as_bgr_image`."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # The high byte, as cv2.imread does with a 16-bit file read as 8 bit.
        return (img >> 8).astype(np.uint8)
    expected = ('expected uint8 [0, 255], uint16, or float in [0, 1] or '
                '[0, 255]')
    if np.issubdtype(img.dtype, np.integer):
        low, high = int(img.min()), int(img.max())
        if low < 0 or high > 255:
            raise InputError(f'The {what} is {img.dtype} with values from '
                             f'{low} to {high}; {expected}.')
        return img.astype(np.uint8)
    if not np.issubdtype(img.dtype, np.floating):
        raise InputError(f'The {what} has dtype {img.dtype}, not pixel '
                         f'values; {expected}.')
    if not np.isfinite(img).all():
        raise InputError(f'The {what} contains NaN or infinite values; '
                         f'{expected}.')
    low, high = float(img.min()), float(img.max())
    if low < 0 or high > 255:
        raise InputError(f'The {what} is {img.dtype} with values from '
                         f'{low:g} to {high:g}; {expected}.')
    if high <= 1:
        img = img * 255.
    return np.rint(img).astype(np.uint8)


#: The EXIF tag saying how a camera held the image.
_EXIF_ORIENTATION = 0x0112


def _pil_pixels(img: Image.Image, what: str,
                max_pixels: Optional[int]) -> Tuple[np.ndarray, str]:
    """The pixels of a PIL image (RGB order) as an array for
    :func:`as_bgr_image`: BGR for colour modes, ``[H, W]`` for grey ones;
    16-bit (``I;16``), 32-bit integer (``I``) and float (``F``) data as
    they are, for the dtype rules. Returns the array and ``what`` naming
    the mode where those rules may refuse it."""
    width, height = img.size
    if width and height:
        # From the header alone: a file opened by Image.open is not
        # decoded yet, and the check must come before its pixels are.
        check_pixels(width, height, f'The {what}', max_pixels)
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        # Turned upright, as cv2.imread turns a path or bytes: a phone photo
        # was otherwise seen on its side when handed over as a PIL image.
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    try:
        if mode in ('I', 'F') or mode.startswith('I;16'):
            array = np.asarray(img)
            # 'I;16B' is big-endian, which the dtype rules do not match.
            native = array.astype(array.dtype.newbyteorder('='), copy=False)
            return native, f'{what} (PIL mode {mode})'
        if mode in ('L', 'RGB'):
            array = np.asarray(img)
        elif mode in ('1', 'LA'):
            array = np.asarray(img.convert('L'))  # '1' as 0 and 255
        elif mode == 'La':  # premultiplied: PIL converts it only to 'LA'
            array = np.asarray(img.convert('LA').convert('L'))
        else:
            # Palettes by way of RGBA: PIL warns when convert('RGB') drops
            # a palette's transparency, which is dropped here anyway.
            array = np.asarray(
                img.convert('RGBA' if mode in ('P', 'PA') else 'RGB'))[..., :3]
    except (OSError, SyntaxError, ValueError) as err:
        # What PIL raises on a damaged file or a mode it cannot convert.
        raise InputError(
            f'Cannot read the {what} (a PIL image in mode {mode}): PIL could '
            f'not decode its pixels ({err}); convert it to RGB yourself, or '
            'pass the file\'s path if the file is damaged.') from None
    return (array[..., ::-1] if array.ndim == 3 else array), what


def as_bgr_image(img: Union[np.ndarray, Image.Image],
                 what: str = 'image',
                 max_pixels: Optional[int] = None) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` array from a colour, grayscale or RGBA one,
    or from a PIL image.

    Shapes: ``[H, W]`` and ``[H, W, 1]`` are grayscale (repeated to three
    channels), ``[H, W, 3]`` is BGR, ``[H, W, 4]`` BGRA (alpha dropped).

    A PIL image is RGB, whatever array libraries make of it: colour modes
    (``RGB``, ``RGBA``, ``P``, ``PA``, ``CMYK``, ``YCbCr`` ...) are
    converted to RGB by PIL (alpha dropped) and then to BGR, grey ones
    (``L``, ``LA``, ``1``) by PIL to ``L``; ``I;16`` (16-bit), ``I``
    (32-bit) and ``F`` (float) keep their values for the dtype rules below.

    Pixel values, by dtype:

    - ``uint8``: as they are;
    - ``uint16``: the high byte (``value >> 8``), as ``cv2.imread`` reads a
      16-bit file as 8 bit;
    - other integers: taken as they are when all lie in ``[0, 255]``;
    - floats: ``[0, 1]`` when the largest value is at most 1 (multiplied by
      255), else ``[0, 255]``; rounded to the nearest integer.

    Anything else (bool, complex, object, strings, values outside these
    ranges, NaN or infinity) raises :class:`InputError`, as does an image
    above the pixel limit (:func:`max_pixels_limit`).
    """
    if isinstance(img, Image.Image):
        img, what = _pil_pixels(img, what, max_pixels)
    img = np.asarray(img)
    if img.dtype == bool or not np.issubdtype(img.dtype, np.number):
        raise InputError(f'The {what} is not an array of pixel values '
                         f'(dtype {img.dtype}).')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise InputError(f'The {what} has shape {img.shape}; expected '
                         '[H, W], [H, W, 3] or [H, W, 4].')
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f'The {what} is empty ({img.shape[0]} x '
                         f'{img.shape[1]} pixels).')
    check_pixels(img.shape[1], img.shape[0], f'The {what}', max_pixels)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[..., :3]  # the alpha channel carries nothing to segment
    return np.ascontiguousarray(_pixels_to_uint8(img, what))


def _header_size(source, name: str,
                 max_pixels: Optional[int]) -> Tuple[int, int]:
    try:
        with warnings.catch_warnings():
            # Its own bomb limit (~89 MP) only warns; ours decides.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(source) as im:
                return im.size
    except Image.DecompressionBombError:
        # Beyond PIL's own ceiling its header gives no size, only this.
        raise InputError(
            f'{_sentence_start(name)} has more than '
            f'{2 * Image.MAX_IMAGE_PIXELS / 1e6:.1f} '
            f'megapixels (PIL.Image.MAX_IMAGE_PIXELS x 2), above the limit '
            f'of {max_pixels_limit(max_pixels) / 1e6:g} megapixels: '
            'downscale it, or raise the limit (max_pixels= or '
            f'{MAX_PIXELS_ENV}, and PIL.Image.MAX_IMAGE_PIXELS) if you have '
            'the memory.')
    except Exception:  # PIL raises assorted errors on what is no image
        raise UnreadableImageError(
            f'Cannot read {name} as an image (not an image file, a corrupt '
            f'one, or none of {", ".join(IMAGE_EXTS)}).')


def image_size(source: ImageSource,
               max_pixels: Optional[int] = None) -> Tuple[int, int]:
    """``(width, height)`` of an image file or its bytes, from the header
    alone (nothing is decoded). Images beyond PIL's own ceiling
    (``2 * PIL.Image.MAX_IMAGE_PIXELS``, 179 megapixels) raise
    :class:`InputError` naming ``max_pixels``'s limit."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if osp.isdir(path):
            raise InputError(f'{path} is a folder, not an image file: give '
                             'the path of one image.')
        if not osp.isfile(path):
            raise InputError(f'Image not found: {path}')
        if not osp.getsize(path):
            raise UnreadableImageError(
                f'Cannot read {path} as an image: the file is empty '
                '(0 bytes).')
        return _header_size(path, path, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _header_size(
            io.BytesIO(source), 'the uploaded data', max_pixels)
    raise InputError('An image file is a path or its bytes, got '
                     f'{type(source).__name__}.')


def check_image_size(source: ImageSource,
                     max_pixels: Optional[int] = None) -> Tuple[int, int]:
    """``(width, height)`` of an image file or its bytes, read from the
    header; :class:`InputError` when it is not an image or is above the
    pixel limit (:func:`max_pixels_limit`). Call it on uploads before
    decoding them."""
    width, height = image_size(source, max_pixels)
    name = os.fspath(source) if isinstance(source,
                                           (str, os.PathLike)) else 'The image'
    check_pixels(width, height, name, max_pixels)
    return width, height


def read_image(img: Union[ImageSource, np.ndarray, Image.Image],
               max_pixels: Optional[int] = None) -> np.ndarray:
    """A BGR uint8 image ``[H, W, 3]`` from a path, an encoded file's bytes,
    an array (taken as BGR, OpenCV's order) or a PIL image (RGB); arrays
    and PIL images are converted as :func:`as_bgr_image` says.

    Files are checked against the pixel limit (``max_pixels``, see
    :func:`max_pixels_limit`) from their header before they are decoded.
    """
    if img is None:
        raise InputError('No image given.')
    if isinstance(img, (str, os.PathLike, bytes, bytearray, memoryview)):
        check_image_size(img, max_pixels)
        if isinstance(img, (str, os.PathLike)):
            name = os.fspath(img)
            with open(name, 'rb') as f:
                data = f.read()
        else:
            name, data = 'the uploaded data', img
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if array is None or array.size == 0:
            raise UnreadableImageError(
                f'Cannot read {name} as an image (not an image file, or a '
                'corrupt one).')
        return array
    return as_bgr_image(img, max_pixels=max_pixels)


# ----------------------------------------------------------------------
# videos
# ----------------------------------------------------------------------
def open_video_quietly(source, *args) -> cv2.VideoCapture:
    """``cv2.VideoCapture(source, *args)`` without the log lines of OpenCV
    and FFmpeg, for every video file, camera and stream the API opens: the
    user is told once, by :class:`InputError`.

    - Each backend tried on a missing camera prints its own warning.
    - FFmpeg logs on its own (``moov atom not found`` for an empty or
      damaged mp4, ``Failed to resolve hostname`` for a stream) unless its
      level is set before its first use in the process; a level the user
      set (``OPENCV_FFMPEG_LOGLEVEL``) is kept.
    - A file FFmpeg cannot open goes on to OpenCV's own AVI reader, which
      prints to stderr whatever the log level (``Unexpected element``), so
      a file without a backend given is opened by FFmpeg alone where
      OpenCV has it (it reads the files those do: MJPEG AVI, image
      sequences).
    """
    os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')
    if (not args and isinstance(source, str) and not is_stream_url(source)
            and cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG)):
        args = (cv2.CAP_FFMPEG, )
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(source, *args)
    finally:
        logging.setLogLevel(level)


def _fourcc(cap) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return ''.join(chr((code >> 8 * i) & 0xFF) for i in range(4))


def _packet_sizes(path: str) -> Iterator[Optional[Tuple[int, int]]]:
    """``(width, height)`` of each frame of an MJPEG video, from the JPEG
    header of each packet (None where it cannot be read)."""
    cap = open_video_quietly(path)
    try:
        if not cap.set(cv2.CAP_PROP_FORMAT, -1):  # raw packets
            return
        while True:
            ok, packet = cap.read()
            if not ok or packet is None:
                return
            try:
                with Image.open(io.BytesIO(packet.tobytes())) as im:
                    yield im.size
            except Exception:
                yield None
    finally:
        cap.release()


# The top-level layout of the containers whose header says how long the
# file is: RIFF (AVI), ISO BMFF (mp4, mov, m4v, 3gp) and EBML (mkv, webm).
_BMFF_FIRST_BOXES = (b'ftyp', b'styp', b'moov', b'mdat', b'free', b'skip',
                     b'wide', b'pnot', b'uuid')
# The boxes a file has at its top level (ISO 14496-12, QuickTime); other
# bytes there are data appended to the file, with no size to judge by.
_BMFF_TOP_LEVEL = _BMFF_FIRST_BOXES + (b'moof', b'mfra', b'meta', b'sidx',
                                       b'ssix', b'prft', b'emsg', b'pdin')
_EBML_MAGIC = b'\x1a\x45\xdf\xa3'
_EBML_TOP_LEVEL = (0x1A45DFA3, 0x18538067)  # the EBML header, a Segment


def _riff_ends(f, size: int) -> Iterator[Optional[int]]:
    pos = 0
    while pos < size:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            yield None  # cut inside a chunk's header
            return
        if header[:4] != b'RIFF':  # trailing bytes that are no chunk
            return
        end = pos + 8 + struct.unpack('<I', header[4:])[0]
        yield end
        pos = end + (end & 1)


def _bmff_ends(f, size: int) -> Iterator[Optional[int]]:
    pos = 0
    while pos < size:
        f.seek(pos)
        header = f.read(16)
        if len(header) < 8:
            yield None
            return
        length = struct.unpack('>I', header[:4])[0]
        if length == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                yield None
                return
            length = struct.unpack('>Q', header[8:16])[0]
        elif length == 0:  # the box runs to the end of the file
            return
        if length < 8 or header[4:8] not in _BMFF_TOP_LEVEL:
            return
        yield pos + length
        pos += length


def _ebml_number(f, keep_marker: bool) -> Optional[Tuple[int, bool]]:
    """An EBML variable-length number (an element's id with its length
    marker, or a size without it) and whether it is 'unknown' (all ones);
    None where the file ends inside it, ValueError where no number
    starts."""
    first = f.read(1)
    if not first:
        return None
    if not first[0]:
        raise ValueError('no EBML number starts with a zero byte')
    length = 9 - first[0].bit_length()
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        return None
    value = first[0] if keep_marker else first[0] & (0xFF >> length)
    for byte in rest:
        value = value << 8 | byte
    return value, not keep_marker and value == (1 << 7 * length) - 1


def _ebml_ends(f, size: int) -> Iterator[Optional[int]]:
    pos = 0
    while pos < size:
        f.seek(pos)
        try:
            element = _ebml_number(f, True)
            length = None if element is None else _ebml_number(f, False)
        except ValueError:  # no element here: nothing to judge by
            return
        if length is None:
            yield None
            return
        if element[0] not in _EBML_TOP_LEVEL or length[1]:
            # Bytes that are no element of the file's own (trailing data),
            # or a size left unknown (a live recording): no judge.
            return
        end = f.tell() + length[0]
        yield end
        pos = end


def _cut_short(path: str) -> bool:
    """Whether the file ends before its container says it does (the size
    of a top-level RIFF chunk, mp4 box or EBML element runs past the end).
    False for other containers (MPEG-TS, FLV ...), whose headers hold no
    size."""
    try:
        size = osp.getsize(path)
        with open(path, 'rb') as f:
            head = f.read(12)
            if head[:4] == b'RIFF':
                ends = _riff_ends(f, size)
            elif head[4:8] in _BMFF_FIRST_BOXES:
                ends = _bmff_ends(f, size)
            elif head[:4] == _EBML_MAGIC:
                ends = _ebml_ends(f, size)
            else:
                return False
            return any(end is None or end > size for end in ends)
    except OSError:
        return False


def _is_avi(path: str) -> bool:
    try:
        with open(path, 'rb') as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b'RIFF' and head[8:12] == b'AVI '


def _claimed_frames(cap, path: Optional[str]) -> int:
    """The frame count the file's header claims; 0 where unknown (a live
    source, a container that does not say)."""
    if path is None:
        return 0
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if count > 0 else 0


#: Reads tried past a frame that fails, at least (at most
#: :data:`_MAX_READS_PAST_FAILURE`, or up to the count the header claims):
#: a damaged frame fails to decode while the frames after it read again,
#: one failed read per damaged packet; at the end of a file each read
#: fails at once.
_READS_PAST_FAILURE = 16
_MAX_READS_PAST_FAILURE = 1024


def _frames_follow(cap, index: int, claimed: int) -> bool:
    """Whether ``cap`` has frames after the one at ``index`` that failed:
    by reading on, then by seeking a quarter, half and three quarters of
    the way to the claimed count (a demuxer that lost its way in damaged
    data ends reading there: an mkv, avi or MPEG-TS; measured, a seek past
    the end of whole files of those formats finds no frame, whatever
    count their header claims)."""
    tries = min(
        max(claimed - index, _READS_PAST_FAILURE), _MAX_READS_PAST_FAILURE)
    if any(cap.grab() for _ in range(tries)):
        return True
    for probe in sorted(
        {index + (claimed - index) * q // 4
         for q in (1, 2, 3)} - {index}):
        if probe > index and cap.set(cv2.CAP_PROP_POS_FRAMES,
                                     probe) and cap.grab():
            return True
    return False


def _check_ended(cap, path: str, name: str, index: int, claimed: int) -> None:
    """Refuse a file whose reading stopped at frame ``index`` of the
    ``claimed`` ones (0: unknown) before its end: damaged there (frames
    after it can be read), or cut short.

    A count alone does not tell a cut: where the container records none
    (MPEG-TS and -PS), OpenCV estimates it from the duration (~100 for a
    whole 2-frame .ts file); an mp4 trimmed without re-encoding counts the
    frames its edit list skips. The header's own size settles it. No
    tolerance is needed for the rest: for the mp4, avi and mkv files
    OpenCV writes, its count is exactly the frames read
    (tests/test_apis/test_video_files.py).

    An AVI's count is its index's, one entry per frame: fewer frames read
    from a whole file means frames its demuxer passed over without a word
    (a frame chunk whose tag is damaged), so every frame after the first
    one lost was numbered one too early.
    """
    subject = _sentence_start(name)
    repair = ('copy it again, or repair it by re-encoding (e.g. ffmpeg -i '
              f'{shlex.quote(path)} -c:v libx264 repaired.mp4)')
    if _frames_follow(cap, index, claimed):
        raise InputError(
            f'{subject} is damaged at frame {index}: OpenCV cannot read on '
            f'from there, though frames after it exist; {repair}.')
    if index >= claimed:
        return
    if _cut_short(path):
        raise InputError(
            f'{subject} is cut short: reading stopped at frame {index} of '
            f'the {claimed} frames its header claims (the file ends before '
            'its header says it does: an interrupted copy, download or '
            'recording); copy or download it again.')
    if _is_avi(path):
        raise InputError(
            f'{subject} is damaged: {index} of the {claimed} frames its '
            'header claims could be read (OpenCV passes over a frame it '
            'cannot find without a word, so the frames after it were out of '
            f'place); {repair}.')


def _capture_frames(cap, name: str, path: Optional[str],
                    max_pixels: Optional[int]) -> Iterator[np.ndarray]:
    """Frames of an opened ``cv2.VideoCapture``; ``path`` is the file's,
    for its MJPEG frame sizes (None for live sources)."""
    sizes = iter(())
    subject = _sentence_start(name)  # begins check_pixels' message
    try:
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width and height:
            check_pixels(width, height, subject, max_pixels)
        # OpenCV scales every frame to the first one's size without a word;
        # for MJPEG each packet's JPEG header tells the true size.
        if path is not None and _fourcc(cap) == 'MJPG':
            sizes = _packet_sizes(path)
        claimed = _claimed_frames(cap, path)
        first, index = None, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                if path is not None:
                    _check_ended(cap, path, name, index, claimed)
                return
            size = next(sizes, None)
            if size is not None:
                first = first or size
                if size != first:
                    raise InputError(
                        f'Frame {index} of {name} is {size[0]} x {size[1]} '
                        f'pixels, the first was {first[0]} x {first[1]}: '
                        'all frames of a video must have one size.')
            if path is None:  # a live source's header may say nothing
                check_pixels(frame.shape[1], frame.shape[0], name, max_pixels)
            index += 1
            yield frame
    finally:
        if hasattr(sizes, 'close'):
            sizes.close()  # releases its capture now, not at collection
        cap.release()


def _video_file_frames(path: str,
                       max_pixels: Optional[int]) -> Iterator[np.ndarray]:
    cap = open_video_quietly(path)
    if not cap.isOpened():
        cap.release()
        raise InputError(f'Cannot open {path} as a video (not a video '
                         'file, a damaged one, or a codec OpenCV cannot '
                         'read).')
    return _capture_frames(cap, f'the video {path}', path, max_pixels)


#: How long opening a stream URL, and then each read, may take.
STREAM_TIMEOUT_MS = 10_000


def is_stream_url(source) -> bool:
    """Whether ``source`` names a network stream (``rtsp://``, ``http://``
    ...) rather than a file."""
    return isinstance(source, str) and '://' in source


#: Query parameters that carry a credential (IP cameras take their
#: login so: ``?user=admin&password=...``), matched in any case.
SECRET_PARAMS = frozenset(
    ('password', 'pwd', 'pass', 'passwd', 'token', 'auth', 'key', 'apikey',
     'api_key', 'access_token', 'secret', 'user', 'username', 'usr', 'login'))

# NAME=VALUE after a /, ?, & or #: the query's parameters, and those some
# cameras take in the path (rtsp://HOST/user=admin&password=PW&channel=1)
# or a page in the fragment. A value runs to the next & or # (a ? or / in
# it stays hidden: shown too little rather than a password's tail).
_PARAM = re.compile(r'(?<=[/?&#])([^/?&#=]+)=([^&#]*)')


def _without_secret_params(url: str) -> str:
    """``url`` with the values of its :data:`SECRET_PARAMS` parameters
    (in the path, query or fragment, after the host) replaced by ``***``,
    its text otherwise as it was. Found by hand: ``urlsplit`` refuses some
    URLs. Parameters are separated by ``&``, as servers read them: a ``;``
    is part of a value."""
    scheme, sep, rest = url.partition('://')
    if not sep:
        scheme, rest = '', url
    cut = min([i for i in map(rest.find, '/?#') if i >= 0] or [len(rest)])
    host, tail = rest[:cut], rest[cut:]

    def hide(match):
        name, value = match.groups()
        decoded = urllib.parse.unquote_plus(name).strip().lower()
        return f'{name}=***' if value and decoded in SECRET_PARAMS else (
            match.group(0))

    return f'{scheme}{sep}{host}{_PARAM.sub(hide, tail)}'


def without_password(url: str) -> str:
    """``url`` without its ``user:password@`` (or ``user@``), and with the
    values of its credential parameters (``password=``, ``token=``,
    ``user=`` ...: :data:`SECRET_PARAMS`, in the query, the path or the
    fragment) as ``***``: every message, log line and file that names a
    stream names it so, not its credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # urlsplit refuses some (an unclosed IPv6 bracket)
        url = re.sub(r'(?<=://)[^/?#]*@', '', url, count=1)
    else:
        if '@' in parts.netloc:
            host = parts.netloc.rsplit('@', 1)[1]
            url = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return _without_secret_params(url)


def _live_frames(source: Union[int, str],
                 max_pixels: Optional[int]) -> Iterator[np.ndarray]:
    """Frames of a camera (its index) or a stream URL, until it ends."""
    if isinstance(source, str):
        name = f'the stream {without_password(source)}'
        # Without timeouts an unreachable host blocks for minutes.
        cap = open_video_quietly(source, cv2.CAP_ANY, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS
        ])
        hint = ('unreachable, not a video stream, or a protocol OpenCV '
                'cannot read')
    else:
        name = f'camera {source}'
        cap = open_video_quietly(source)
        hint = 'no such camera, or another program is using it'
    if not cap.isOpened():
        cap.release()
        raise InputError(f'Cannot open {name} ({hint}).')
    return _capture_frames(cap, name, None, max_pixels)


def _number_order(name: str) -> tuple:
    """Sorts ``frame2`` before ``frame10``; zero-padded names keep their
    order."""
    parts = re.split(r'(\d+)', name)
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], name


def frame_files(path: str) -> list:
    """The frames of a folder: its image files in number order
    (:func:`_number_order`). Hidden files (``.NAME``, such as the
    ``._NAME`` files macOS leaves beside each file on a USB drive) and
    folders are no frames."""
    return sorted(
        (f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS)
         and not f.startswith('.') and not osp.isdir(osp.join(path, f))),
        key=_number_order)


def _folder_frames(path: str,
                   max_pixels: Optional[int]) -> Iterator[np.ndarray]:
    files = frame_files(path)
    if not files:
        raise InputError(f'No images ({", ".join(IMAGE_EXTS)}) in the '
                         f'folder {path}: a video is a folder of its frames '
                         'or a video file (give the path of the file).')
    for name in files:
        yield read_image(osp.join(path, name), max_pixels)


def _array_frames(video, max_pixels: Optional[int]) -> Iterator[np.ndarray]:
    if isinstance(video, Image.Image):
        raise InputError(
            'A single image is not a video: use segment_image, or pass a '
            'list of frames (of an animated image: [f.copy() for f in '
            'PIL.ImageSequence.Iterator(img)]).')
    if isinstance(video, np.ndarray) and video.ndim != 4:
        raise InputError(
            f'A video array must be [T, H, W, 3] (or [T, H, W, 1] / '
            f'[T, H, W, 4]), got shape {video.shape}; for one image use '
            'segment_image, for grayscale frames pass a list of [H, W] '
            'arrays.')
    for index, frame in enumerate(video):
        if isinstance(frame, Image.Image):  # RGB: as_bgr_image converts it
            yield as_bgr_image(frame, 'video frame', max_pixels)
            continue
        if isinstance(frame, (str, os.PathLike)):
            raise InputError(
                f'Frame {index} of the video is a path ({os.fspath(frame)}): '
                'pass the folder of frames as the video, or the frames as '
                'arrays or PIL images (read_image reads a file).')
        frame = np.asarray(frame)
        if frame.ndim == 2 and frame.shape[1] in (3, 4):
            # The rows of a single [H, W, 3] image, each taken as a frame.
            raise InputError(
                f'Frame {index} of the video has shape {frame.shape}, a row '
                'of a colour image rather than a frame: pass a [T, H, W, 3] '
                'array or a list of [H, W, 3] frames.')
        yield as_bgr_image(frame, 'video frame', max_pixels)


def _iterable(video) -> bool:
    try:
        iter(video)  # also the sequences iterated by __getitem__ alone
    except TypeError:
        return False
    return True


def iter_frames(video: Union[str, int, np.ndarray, Sequence[np.ndarray]],
                max_pixels: Optional[int] = None) -> Iterator[np.ndarray]:
    """BGR uint8 frames, read lazily so that long videos never sit in
    memory whole.

    Args:
        video: A video file (anything OpenCV reads: mp4, avi, webm ...), a
            folder of frames (its image files in number order: ``2.png``
            before ``10.png``; hidden files skipped), a camera index
            (``0``), a stream URL (``rtsp://...``, ``http://...``:
            anything OpenCV's FFmpeg reads; opening and each read time out
            after :data:`STREAM_TIMEOUT_MS`), a ``[T, H, W, 3]`` array or a
            sequence (or iterator) of ``[H, W, 3]`` arrays (BGR) or PIL
            images (RGB), converted as :func:`as_bgr_image` says. A single
            ``[H, W, 3]`` array or PIL image is refused: it is not a video.
        max_pixels (int, optional): The pixel limit per frame (see
            :func:`max_pixels_limit`).

    All frames must have one size. For video files OpenCV scales every
    frame to the first frame's size; MJPEG files (raw ``.mjpeg`` or in
    AVI) are checked frame by frame and refused when a size changes, other
    codecs do not tell. A camera or a stream is read until it stops
    delivering frames: a stream that breaks off ends the video there.

    A video file that ends before its container's header says it does (an
    avi, mp4 or mkv/webm cut short by an interrupted copy, download or
    recording) raises :class:`InputError` once the frames before the cut
    are read, naming the frame where reading stopped and the count the
    header claims. Formats whose header holds no size (MPEG-TS, FLV ...)
    end where their frames end, as streams do. A file damaged part-way
    (OpenCV stops reading at a frame, while frames after it can be read)
    raises :class:`InputError` naming that frame, once the frames before
    it are read.
    """
    if is_stream_url(video) or (isinstance(video, numbers.Integral)
                                and not isinstance(video, bool)):
        if not is_stream_url(video) and video < 0:
            raise InputError(f'A camera index is 0 or more, got {video}.')
        frames = _live_frames(video, max_pixels)
        name = (f'the stream {without_password(video)}'
                if is_stream_url(video) else f'camera {video}')
    elif isinstance(video, (str, os.PathLike)):
        path = os.fspath(video)
        if osp.isdir(path):
            frames = _folder_frames(path, max_pixels)
        elif osp.isfile(path):
            frames = _video_file_frames(path, max_pixels)
        else:
            raise InputError(f'Video not found: {path}')
        name = path
    elif video is None:
        raise InputError('No video given.')
    elif isinstance(video, (bytes, bytearray, memoryview, numbers.Number)) \
            or not (_iterable(video) or isinstance(video, Image.Image)):
        raise InputError('A video is a file, a folder of frames, a camera '
                         'index, a stream URL, a [T, H, W, 3] array or a '
                         f'list of frames, got {type(video).__name__}.')
    else:
        frames = _array_frames(video, max_pixels)
        name = 'the video'
    shape, count = None, 0
    for frame in frames:
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(
                f'Frame {count} of {name} is {frame.shape[1]} x '
                f'{frame.shape[0]} pixels, the first was {shape[1]} x '
                f'{shape[0]}: all frames of a video must have one size.')
        count += 1
        yield frame
    if count == 0:
        raise InputError(f'{name} has no frames (empty, or a file OpenCV '
                         'cannot decode).' if 'stream' not in name and 'camera'
                         not in name else f'{name} delivered no frames.')


# ----------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------
def _has_bool(values) -> bool:
    if isinstance(values, (bool, np.bool_)):
        return True
    if isinstance(values, (list, tuple)):
        return any(_has_bool(v) for v in values)
    return False


def _as_rows(values, width: int, what: str) -> np.ndarray:
    """``[N, width]`` float64 rows. One flat prompt (``width`` numbers) is
    one row; any other flat list is refused, as its pairing is a guess."""
    example = '[[x, y], ...]' if width == 2 else '[[x1, y1, x2, y2], ...]'
    if values is None:
        return np.zeros((0, width))
    if _has_bool(values):
        raise InputError(f'{what} must be numbers, got booleans: {example}.')
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):  # ragged lists
        raise InputError(f'{what} must be numbers in rows {example}, got '
                         f'{values!r}.')
    if array.dtype == bool:
        raise InputError(f'{what} must be numbers, got booleans: {example}.')
    if array.size == 0:
        return np.zeros((0, width))
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(
            array.dtype, np.floating):
        raise InputError(f'{what} must be numbers, got {values!r}.')
    if array.ndim == 1 and array.shape[0] == width:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f'{what} must be [N, {width}] rows {example} (or '
                         f'one prompt of {width} numbers), got shape '
                         f'{tuple(array.shape)}.')
    if not np.isfinite(array).all():
        raise InputError(f'{what} contain non-finite numbers (NaN or '
                         'infinity).')
    # float64, not float32: 1e40 is a number outside the image, which the
    # geometry checks say, not an overflow to infinity. Only a longdouble
    # beyond float64 still overflows, to an infinity those checks take as
    # any far value (a point refused, a box clipped).
    with np.errstate(over='ignore'):
        return array.astype(np.float64)


def check_prompts(points, boxes, width: int,
                  height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validated ``[N, 2]`` points and ``[M, 4]`` boxes, in image pixels.

    Rows are ``[[x, y], ...]`` and ``[[x1, y1, x2, y2], ...]``; a single
    flat prompt (``[x, y]``, ``[x1, y1, x2, y2]``) is one row, while any
    other flat list (``[x, y, x, y]``) is refused rather than re-paired.
    Booleans and strings are refused. A point must lie inside the image; a
    box must have x2 > x1, y2 > y1 and overlap the image, and is clipped to
    it.
    """
    points = _as_rows(points, 2, 'Points (x, y)')
    boxes = _as_rows(boxes, 4, 'Boxes (x1, y1, x2, y2)')
    if len(points) == 0 and len(boxes) == 0:
        raise InputError('No prompt: give at least one point (x, y) or box '
                         '(x1, y1, x2, y2).')
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise InputError(
                f'The point ({x:g}, {y:g}) is outside the image, which is '
                f'{width} x {height} pixels.')
    for x1, y1, x2, y2 in boxes:
        if x2 <= x1 or y2 <= y1:
            raise InputError(f'The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) '
                             'needs x2 > x1 and y2 > y1.')
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InputError(
                f'The box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the '
                f'image, which is {width} x {height} pixels.')
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    # Inside the image now, so float32 holds every value.
    return points.astype(np.float32), boxes.astype(np.float32)


def parse_numbers(text: str, count: int, what: str) -> list:
    """``"x,y"``-style command-line values -> ``count`` floats."""
    try:
        values = [float(v) for v in text.replace(' ', '').split(',')]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f'{what} must be {count} comma-separated numbers, '
                         f'got {text!r}.')
    return values
