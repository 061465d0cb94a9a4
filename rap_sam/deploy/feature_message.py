"""An image's encoded features as one binary message, for a client that
runs the prompt decoder itself (the browser demo, ``demo/web/``).

Layout (every number little-endian)::

    bytes 0-7     magic  b'RSAMFEAT'
    bytes 8-11    uint32 L, the length of the header
    bytes 12-     the header: L bytes of UTF-8 JSON, padded with spaces so
                  that the data starts at a multiple of 8
    then          the data: each tensor's values in C order, at its
                  ``offset`` (from the start of the data, a multiple of 8)

The header::

    {"format": "rap_sam.features", "version": 1,
     "tensors": [{"name": "basis", "dtype": "float16",
                  "shape": [1, 16, 24, 128], "offset": 0,
                  "nbytes": 98304}],
     "meta": {"ori_shape": [H, W], "img_shape": [h, w],
              "batch_input_shape": [Hp, Wp], "scale_factor": [sx, sy]}}

``tensors`` are the image encoder's outputs by name (what the prompt
decoder reads); ``meta`` is what the preprocessing recorded
(:class:`rap_sam.deploy.backends.ImagePreprocessor`): the original size,
the resized size before padding (the decoder's ``img_shape`` input), the
padded size, and the resize factors ``(w, h)`` that map a click in the
original image to the decoder's pixels. ``dtype`` is ``float32`` or
``float16`` (half the bytes; a client converts it back to float32 before
decoding). numpy only, no torch: a deployment imports it without the
model.
"""
import json
import struct
from typing import Dict, Tuple

import numpy as np

from rap_sam.utils.user_errors import UserError

MAGIC = b'RSAMFEAT'
FORMAT = 'rap_sam.features'
VERSION = 1
DTYPES = ('float32', 'float16')
#: The meta keys a message carries (each a list of numbers).
META_KEYS = ('ori_shape', 'img_shape', 'batch_input_shape', 'scale_factor')
_PREFIX = struct.Struct('<8sI')
_ALIGN = 8
# The largest finite float16; larger values would become inf.
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class FeatureMessageError(UserError, ValueError):
    """A message that is not a feature message this code can read."""


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def encode_features(tensors: Dict[str, np.ndarray],
                    meta: dict,
                    half: bool = False) -> bytes:
    """The message for an image's encoder outputs and its preprocessing
    meta.

    Args:
        tensors (dict[str, ndarray]): Float arrays by name.
        meta (dict): At least :data:`META_KEYS`; other keys are left out.
        half (bool): Send float16 (half the bytes; the decoder's inputs
            are float32, so the client widens them again). A tensor with a
            value beyond float16's range is sent as float32 instead: the
            header says which.

    Returns:
        bytes: The message.
    """
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f'meta lacks {", ".join(missing)}')
    entries, blobs, offset = [], [], 0
    for name, array in tensors.items():
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f'{name} is {array.dtype}, not a float array')
        dtype = 'float32'
        if half and np.isfinite(array).all() and (
                array.size == 0 or np.abs(array).max() <= _FLOAT16_MAX):
            dtype = 'float16'
        data = np.ascontiguousarray(array, np.dtype(dtype).newbyteorder('<'))
        entries.append(
            dict(
                name=name,
                dtype=dtype,
                shape=list(array.shape),
                offset=offset,
                nbytes=data.nbytes))
        blobs.append((offset, data))
        offset = _aligned(offset + data.nbytes)
    header = dict(
        format=FORMAT,
        version=VERSION,
        tensors=entries,
        meta={
            k: [float(v) if k == 'scale_factor' else int(v) for v in meta[k]]
            for k in META_KEYS
        })
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (
        _aligned(_PREFIX.size + len(text)) - _PREFIX.size - len(text))
    out = bytearray(_PREFIX.size + len(text) + offset)
    _PREFIX.pack_into(out, 0, MAGIC, len(text))
    out[_PREFIX.size:_PREFIX.size + len(text)] = text
    start = _PREFIX.size + len(text)
    for at, data in blobs:
        out[start + at:start + at + data.nbytes] = data.tobytes()
    return bytes(out)


def _bad(why: str) -> FeatureMessageError:
    return FeatureMessageError(f'Not a RAP-SAM feature message: {why}.')


def decode_features(message: bytes) -> Tuple[Dict[str, np.ndarray], dict]:
    """``(tensors, meta)`` from a message of :func:`encode_features`:
    float32 arrays (float16 ones widened) by name, and the meta
    (``ori_shape``, ``img_shape``, ``batch_input_shape`` as int tuples,
    ``scale_factor`` as a float tuple).

    Raises:
        FeatureMessageError: a message too short, with another magic, a
            header that is not this format's JSON, or data that does not
            fit the header.
    """
    message = memoryview(message).cast('B')
    if len(message) < _PREFIX.size:
        raise _bad(f'{len(message)} bytes, shorter than its prefix')
    magic, length = _PREFIX.unpack_from(message, 0)
    if magic != MAGIC:
        raise _bad(f'it starts with {bytes(magic)!r}, not {MAGIC!r}')
    start = _PREFIX.size + length
    if start > len(message):
        raise _bad(f'its header claims {length} bytes, more than the '
                   'message holds')
    try:
        header = json.loads(bytes(message[_PREFIX.size:start]))
    except ValueError:
        raise _bad('its header is not JSON')
    if not isinstance(header, dict) or header.get('format') != FORMAT:
        raise _bad(f'its header is not a {FORMAT!r} header')
    if header.get('version') != VERSION:
        raise _bad(f'version {header.get("version")!r}; this code reads '
                   f'version {VERSION}')
    data = message[start:]
    tensors = {}
    try:
        for entry in header['tensors']:
            dtype, shape = entry['dtype'], tuple(entry['shape'])
            offset, nbytes = int(entry['offset']), int(entry['nbytes'])
            if dtype not in DTYPES:
                raise _bad(f'tensor {entry["name"]!r} has dtype {dtype!r}')
            if any(not isinstance(d, int) or d < 0 for d in shape) or \
                    nbytes != np.dtype(dtype).itemsize * int(np.prod(shape)):
                raise _bad(f'tensor {entry["name"]!r} has shape {shape} '
                           f'and {nbytes} bytes')
            if offset < 0 or offset + nbytes > len(data):
                raise _bad(f'tensor {entry["name"]!r} lies past the end of '
                           'the data')
            array = np.frombuffer(
                data[offset:offset + nbytes],
                np.dtype(dtype).newbyteorder('<')).reshape(shape)
            tensors[entry['name']] = array.astype(np.float32)
        meta = header['meta']
        meta = {
            k: tuple((float if k == 'scale_factor' else int)(v)
                     for v in meta[k])
            for k in META_KEYS
        }
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, FeatureMessageError):
            raise
        raise _bad(f'its header is incomplete ({type(err).__name__}: '
                   f'{err})')
    return tensors, meta
