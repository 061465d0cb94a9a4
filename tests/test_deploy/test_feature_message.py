"""The feature message the web demo's server sends: round trips, the
layout its JavaScript reader relies on, and refused messages."""
import json
import struct

import numpy as np
import pytest

from rap_sam.deploy.feature_message import (MAGIC, FeatureMessageError,
                                            decode_features, encode_features)
from rap_sam.utils.user_errors import UserError

META = dict(
    ori_shape=(100, 150),
    img_shape=(64, 96),
    batch_input_shape=(64, 96),
    pad_shape=(64, 96),  # not carried
    scale_factor=(0.64, 0.64))


def features(seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        basis=rng.normal(0, 3, (1, 16, 24, 8)).astype(np.float32),
        other=rng.normal(0, 1, (5, )).astype(np.float32))


def test_float32_round_trip_is_exact():
    tensors = features()
    got, meta = decode_features(encode_features(tensors, META))
    assert list(got) == ['basis', 'other']
    for name, array in tensors.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], array)
    assert meta == dict(
        ori_shape=(100, 150),
        img_shape=(64, 96),
        batch_input_shape=(64, 96),
        scale_factor=(0.64, 0.64))


def test_half_is_half_the_bytes_and_float16_exact():
    tensors = features()
    full = encode_features(tensors, META)
    half = encode_features(tensors, META, half=True)
    data = sum(a.nbytes for a in tensors.values())
    assert len(full) - len(half) == pytest.approx(data / 2, abs=16)
    got, _ = decode_features(half)
    for name, array in tensors.items():
        np.testing.assert_array_equal(
            got[name],
            array.astype(np.float16).astype(np.float32))


def test_values_beyond_float16_stay_float32():
    tensors = dict(big=np.array([1.0, 1e6], np.float32))
    message = encode_features(tensors, META, half=True)
    header = json.loads(message[12:12 + struct.unpack('<I', message[8:12])[0]])
    assert header['tensors'][0]['dtype'] == 'float32'
    np.testing.assert_array_equal(
        decode_features(message)[0]['big'], tensors['big'])


def test_layout_is_the_documented_one():
    """What demo/web/feature_message.js reads: magic, little-endian header
    length, JSON header, data 8-byte aligned at the given offsets."""
    tensors = features()
    message = encode_features(tensors, META, half=True)
    assert message[:8] == MAGIC == b'RSAMFEAT'
    length = struct.unpack('<I', message[8:12])[0]
    start = 12 + length
    assert start % 8 == 0
    header = json.loads(message[12:start].decode())
    assert header['format'] == 'rap_sam.features' and header['version'] == 1
    for entry in header['tensors']:
        assert entry['offset'] % 8 == 0
        array = np.frombuffer(message, '<f2', int(np.prod(entry['shape'])),
                              start + entry['offset']).reshape(entry['shape'])
        np.testing.assert_array_equal(
            array, tensors[entry['name']].astype(np.float16))
    assert len(message) >= start + header['tensors'][-1]['offset'] + \
        header['tensors'][-1]['nbytes']


def _with_header(message: bytes, edit) -> bytes:
    length = struct.unpack('<I', message[8:12])[0]
    header = json.loads(message[12:12 + length])
    edit(header)
    text = json.dumps(header).encode()
    return MAGIC + struct.pack('<I', len(text)) + text + message[12 + length:]


@pytest.mark.parametrize('corrupt, reason', [
    (lambda m: m[:5], 'shorter than its prefix'),
    (lambda m: b'PNG\x00' + m[4:], "starts with b'PNG"),
    (lambda m: m[:8] + struct.pack('<I', 10**6) + m[12:], 'header claims'),
    (lambda m: m[:12] + b'x' + m[13:], 'not JSON'),
    (lambda m: _with_header(m, lambda h: h.update(format='x')), 'not a'),
    (lambda m: _with_header(m, lambda h: h.update(version=2)), 'version 2'),
    (lambda m: _with_header(m, lambda h: h['tensors'][0].update(dtype='int8')),
     "dtype 'int8'"),
    (lambda m: _with_header(m, lambda h: h['tensors'][0].update(shape=[1, 2])),
     'has shape'),
    (lambda m: _with_header(m, lambda h: h['tensors'][1].update(offset=10**7)),
     'past the end'),
    (lambda m: _with_header(m, lambda h: h['meta'].pop('img_shape')),
     'incomplete'),
    (lambda m: m[:-8], 'past the end'),
])
def test_bad_messages_are_refused_in_one_line(corrupt, reason):
    message = encode_features(features(), META)
    with pytest.raises(FeatureMessageError) as err:
        decode_features(corrupt(message))
    assert isinstance(err.value, UserError)
    assert reason in str(err.value) and '\n' not in str(err.value)
    assert str(err.value).startswith('Not a RAP-SAM feature message: ')


def test_encode_refuses_what_it_cannot_describe():
    with pytest.raises(ValueError, match='meta lacks img_shape'):
        encode_features(features(), dict(ori_shape=(1, 1)))
    with pytest.raises(ValueError, match='not a float array'):
        encode_features(dict(x=np.zeros(3, np.int64)), META)


def test_module_needs_no_torch():
    import subprocess
    import sys
    code = ('import sys; sys.modules["torch"] = None; '
            'from rap_sam.deploy.feature_message import decode_features')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
