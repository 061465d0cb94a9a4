"""Files that are not good checkpoints get a one-line message naming the
file, through every way the project loads weights; small files cannot make
the loader take large amounts of memory."""
import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict

import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from rap_sam.utils.checkpoint import (TRUST_ENV, CheckpointFileError,
                                      CheckpointMismatchError,
                                      CheckpointNotFoundError,
                                      NonFiniteWeightsError,
                                      UnsafeCheckpointError, check_finite,
                                      check_state_dict, load_model_weights)
from rap_sam.utils.user_errors import UserError


def toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def weights_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def good_checkpoint(tmp_path):
    path = tmp_path / 'good.pth'
    torch.save(dict(state_dict=toy_model(1).state_dict(), meta=dict()), path)
    return path


# Every way a user's weights reach a model.
LOADERS = {
    'CheckpointLoader':
    lambda path: CheckpointLoader.load_checkpoint(str(path)),
    'mmengine.load_checkpoint':
    lambda path: load_checkpoint(toy_model(), str(path), strict=True),
    'load_model_weights':
    lambda path: load_model_weights(toy_model(), str(path)),
}


def assert_refused(path, error=CheckpointFileError, match=None):
    """Refused the same way by every loader; returns the message."""
    messages = set()
    for name, load in LOADERS.items():
        with pytest.raises(error) as info:
            load(path)
        assert isinstance(info.value, UserError), name
        message = str(info.value)
        assert '\n' not in message, (name, message)
        assert str(path) in message, (name, message)
        if match:
            assert match in message, (name, message)
        messages.add(message)
    assert len(messages) == 1, messages
    return messages.pop()


@pytest.fixture(autouse=True)
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


def test_good_checkpoint_loads_everywhere(good_checkpoint):
    expected = toy_model(1).state_dict()
    for name, load in LOADERS.items():
        assert load(good_checkpoint) is not None, name
    model = toy_model(2)
    load_model_weights(model, str(good_checkpoint))
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_newer_dtypes_load(tmp_path):
    """uint16 and float8 tensors are pickled with torch.UntypedStorage."""
    path = tmp_path / 'dtypes.pth'
    values = dict(
        a=torch.tensor([1, 2, 60000], dtype=torch.uint16),
        b=torch.ones(2, dtype=torch.float8_e4m3fn))
    torch.save(dict(state_dict=values), path)
    loaded = CheckpointLoader.load_checkpoint(str(path))['state_dict']
    assert torch.equal(loaded['a'], values['a'])
    assert loaded['b'].dtype == torch.float8_e4m3fn
    assert loaded['b'].float().tolist() == [1.0, 1.0]


def test_missing_file(tmp_path):
    path = tmp_path / 'nowhere.pth'
    message = assert_refused(path, CheckpointNotFoundError)
    assert message == f'Checkpoint file not found: {path}'
    with pytest.raises(FileNotFoundError):
        load_model_weights(toy_model(), str(path))


def test_directory(tmp_path):
    message = assert_refused(tmp_path, match='is a directory')
    assert 'not a checkpoint file' in message


def test_empty_file(tmp_path):
    path = tmp_path / 'empty.pth'
    path.write_bytes(b'')
    assert_refused(path, match='is empty (0 bytes)')


@pytest.mark.parametrize(
    'content, words', [
        ('model = dict(type="RapSAM")\n', "text file starting with 'model"),
        ('<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML page'),
        ('version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n',
         'Git LFS pointer'),
    ],
    ids=['text', 'html', 'lfs'])
def test_text_file_is_not_a_checkpoint(tmp_path, content, words):
    path = tmp_path / 'weights.pth'
    path.write_text(content)
    message = assert_refused(path, match='is not a PyTorch checkpoint')
    assert words in message
    # Not a question of trust: no advice to turn the safety off.
    assert 'trust' not in message.lower()
    assert TRUST_ENV not in message
    assert 'weights_only' not in message


def test_binary_junk_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'junk.pth'
    path.write_bytes(bytes(range(256)) * 4)
    assert_refused(path, match='is not a PyTorch checkpoint')


@pytest.mark.parametrize('fraction', [0.0005, 0.01, 0.3, 0.5, 0.9, 0.9999])
def test_truncated_checkpoint(good_checkpoint, tmp_path, fraction):
    data = good_checkpoint.read_bytes()
    cut = max(1, int(len(data) * fraction))
    path = tmp_path / 'cut.pth'
    path.write_bytes(data[:cut])
    message = assert_refused(path, match='truncated or damaged')
    assert 'trust' not in message.lower()


@pytest.mark.parametrize('cut', [1, 5, 30, 200, -3])
def test_truncated_legacy_checkpoint(tmp_path, cut):
    """torch's pre-1.6 format, still readable; cut short it fails with
    EOFError or struct.error inside torch."""
    whole = tmp_path / 'legacy.pth'
    torch.save(
        dict(state_dict=toy_model().state_dict()),
        whole,
        _use_new_zipfile_serialization=False)
    LOADERS['load_model_weights'](whole)  # the whole file is fine
    path = tmp_path / 'legacy_cut.pth'
    path.write_bytes(whole.read_bytes()[:cut])
    assert_refused(path, match='truncated or damaged')


def test_damaged_record(good_checkpoint, tmp_path):
    """A zip whose tensor record is shorter than its pickle says."""
    path = tmp_path / 'damaged.pth'
    with zipfile.ZipFile(good_checkpoint) as src, \
            zipfile.ZipFile(path, 'w') as dst:
        for info in src.infolist():
            data = src.read(info)
            if '/data/' in info.filename:
                data = data[:len(data) // 2]
            dst.writestr(info, data)
    assert_refused(path, match='truncated or damaged')


def test_not_a_state_dict(tmp_path):
    path = tmp_path / 'tensor.pth'
    torch.save(torch.ones(3), path)
    with pytest.raises(CheckpointMismatchError, match='holds a Tensor'):
        load_model_weights(toy_model(), str(path))


def save_with(tmp_path, name, **overrides):
    state = toy_model(1).state_dict()
    state.update(overrides)
    path = tmp_path / name
    torch.save(dict(state_dict=state), path)
    return path


def test_nan_and_inf_weights_are_refused_before_use(tmp_path):
    bad = torch.ones(16, 8)
    bad[3, 4] = float('nan')
    path = save_with(
        tmp_path, 'diverged.pth', **{
            '0.weight': bad,
            '1.running_var': torch.full((16, ), float('inf'))
        })
    model = toy_model(2)
    before = weights_of(model)
    with pytest.raises(NonFiniteWeightsError) as info:
        load_model_weights(model, str(path))
    message = str(info.value)
    assert '\n' not in message and str(path) in message
    assert 'in 2 tensor(s): 0.weight, 1.running_var;' in message
    for key, value in before.items():  # the model was not touched
        assert torch.equal(model.state_dict()[key], value), key


def test_many_non_finite_keys_are_counted(tmp_path):
    nan = {
        k: torch.full_like(v, float('nan'))
        for k, v in toy_model().state_dict().items() if v.is_floating_point()
    }
    path = save_with(tmp_path, 'all_nan.pth', **nan)
    with pytest.raises(NonFiniteWeightsError) as info:
        load_model_weights(toy_model(), str(path))
    assert f'in {len(nan)} tensor(s)' in str(info.value)
    assert f'and {len(nan) - 5} more' in str(info.value)


def test_tensor_larger_than_model_is_refused(tmp_path):
    """A file of a few KB that declares a 4 GiB tensor (one float seen through
    a zero stride)."""
    huge = torch.zeros(1).expand(2**30)
    path = save_with(tmp_path, 'huge.pth', **{'3.bias': huge})
    assert path.stat().st_size < 8192
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(toy_model(), str(path))
    message = str(info.value)
    assert "3.bias (1073741824,) = 4.0 GiB" in message
    assert 'larger than the whole Sequential' in message


class Gadget:
    """Stands for what a malicious file carries: a call to os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_code_execution_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    state = toy_model().state_dict()
    torch.save(dict(state_dict=state, meta=dict(x=Gadget(marker))), path)
    message = assert_refused(path, UnsafeCheckpointError, match='system')
    assert TRUST_ENV in message
    assert not marker.exists()


class BigBytes:

    def __reduce__(self):
        return (bytes, (1 << 40, ))


def test_bytes_with_a_size_is_refused(tmp_path):
    """bytes() is allowed for empty numpy arrays, not bytes(1 TiB)."""
    path = tmp_path / 'bytes.pth'
    torch.save(dict(state_dict={}, meta=BigBytes()), path)
    with pytest.raises(UnsafeCheckpointError, match='refusing bytes'):
        CheckpointLoader.load_checkpoint(str(path))


def test_bytearray_is_refused(tmp_path):
    path = tmp_path / 'bytearray.pth'
    torch.save(dict(state_dict={}, meta=bytearray(b'ab')), path)
    assert_refused(
        path, UnsafeCheckpointError, match='allocate unbounded memory')


def test_trusted_file_with_other_objects_loads(tmp_path, monkeypatch):
    import datetime
    path = save_with(tmp_path, 'trusted.pth')
    ckpt = torch.load(path)
    ckpt['meta'] = dict(when=datetime.date(2026, 12, 1))
    torch.save(ckpt, path)
    with pytest.raises(UnsafeCheckpointError, match='datetime.date'):
        load_model_weights(toy_model(), str(path))
    monkeypatch.setenv(TRUST_ENV, '1')
    model = toy_model(2)
    loaded = load_model_weights(model, str(path))
    assert loaded['meta']['when'] == datetime.date(2026, 12, 1)
    assert torch.equal(model[3].bias, toy_model(1)[3].bias)
    # Trust does not hide a broken file behind a traceback.
    (tmp_path / 'text.pth').write_text('hello')
    assert_refused(tmp_path / 'text.pth', match='not a PyTorch checkpoint')


class _Storage:
    pass


class _Tensor:

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_Storage(), 0, (INFLATED // 4, ), (1, ), False,
                 OrderedDict()))


INFLATED = 256 << 20


def write_zip_bomb(path):
    """A torch zip checkpoint whose one tensor record is deflated: about
    256 KB on disk, 256 MiB once inflated."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda obj: (
        ('storage', torch.FloatStorage, '0', 'cpu', INFLATED // 4)
        if isinstance(obj, _Storage) else None)
    pickler.dump(dict(state_dict={'3.bias': _Tensor()}))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('bomb/data.pkl', buffer.getvalue())
        archive.writestr('bomb/version', '3\n')
        archive.writestr('bomb/byteorder', 'little')
        with archive.open('bomb/data/0', 'w', force_zip64=True) as record:
            chunk = bytes(1 << 20)
            for _ in range(INFLATED // len(chunk)):
                record.write(chunk)


MEASURE = r'''
import resource, sys
import torch
from torch import nn
from mmengine.runner import load_checkpoint
from rap_sam.utils.user_errors import UserError
from rap_sam.utils.checkpoint import load_model_weights
model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                      nn.Linear(16, 4))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for load in (lambda: load_model_weights(model, sys.argv[1]),
             lambda: load_checkpoint(model, sys.argv[1])):
    try:
        load()
        print('loaded')
    except UserError as err:
        print('refused:', err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print('grew_kib', after - before)
'''


def test_zip_bomb_is_refused_without_inflating(tmp_path, monkeypatch):
    path = tmp_path / 'bomb.pth'
    write_zip_bomb(path)
    assert path.stat().st_size < 2 << 20
    # Run in a fresh process: its peak memory is what the load cost.
    monkeypatch.delenv(TRUST_ENV, raising=False)
    out = subprocess.run([sys.executable, '-c', MEASURE,
                          str(path)],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    refusals = [line for line in lines if line.startswith('refused:')]
    assert len(refusals) == 2, lines
    for line in refusals:
        assert 'holds compressed records' in line
        assert 'bomb/data/0' in line and 'inflates to 256.0 MiB' in line
    grew_kib = int(lines[-1].split()[-1])
    # Far below the 256 MiB the record inflates to.
    assert grew_kib < 32 << 10, lines


@pytest.mark.parametrize(
    'dtype', [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize('bad', ['nan', 'inf', '-inf'])
def test_check_finite_finds_every_non_finite_value(dtype, bad):
    good = torch.randn(7, 5).to(dtype)
    check_finite(dict(w=good, empty=torch.zeros(0, dtype=dtype)))
    broken = good.clone()
    broken[6, 4] = float(bad)
    with pytest.raises(NonFiniteWeightsError, match='in 1 tensor'):
        check_finite(dict(w=good, broken=broken))


def test_mismatch_is_one_line_with_counts_and_first_keys():
    model = toy_model()
    state = {f'other.{i}.weight': torch.zeros(1) for i in range(40)}
    state['0.weight'] = torch.zeros(7, 7)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(model, state, 'other.pth')
    message = str(info.value)
    assert '\n' not in message
    missing = [k for k in model.state_dict() if k != '0.weight']
    assert message.startswith(
        f'other.pth does not fit Sequential: {len(missing)} missing keys '
        f'({", ".join(missing[:3])}')
    assert '40 unexpected keys (other.0.weight, other.1.weight, ' \
        'other.2.weight, and 37 more)' in message
    shape = tuple(model.state_dict()['0.weight'].shape)
    assert f'1 shape mismatches (0.weight: checkpoint (7, 7) vs model ' \
        f'{shape})' in message
    assert message.endswith('give the config the checkpoint was made with, '
                            'or weights made for this config')
