"""The weights-only checkpoint loader that rap_sam registers with mmengine."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import save_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import rap_sam  # noqa: F401
from rap_sam.utils.checkpoint import TRUST_ENV, UnsafeCheckpointError


class Gadget:
    """Stands for any object a malicious or foreign file might carry."""

    def __reduce__(self):
        return (print, ('this ran while loading', ))


def test_history_buffer_in_fresh_process(tmp_path):
    """A new process has not filled HistoryBuffer's statistics table yet;
    the file must load all the same."""
    path = tmp_path / 'hb.pth'
    save_checkpoint(
        dict(meta=dict(hist=HistoryBuffer([1.0, 3.0], [1, 1])), state_dict={}),
        str(path))
    code = ('import rap_sam; from mmengine.runner.checkpoint import '
            'CheckpointLoader as L; '
            f'print(L.load_checkpoint({str(path)!r})["meta"]["hist"].mean())')
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == '2.0'


def test_numpy_meta_loads(tmp_path):
    path = tmp_path / 'np.pth'
    save_checkpoint(
        dict(
            meta=dict(seed=np.int64(3), arr=np.arange(3.)),
            state_dict={'w': torch.ones(2)}), str(path))
    ckpt = CheckpointLoader.load_checkpoint(str(path))
    assert ckpt['meta']['seed'] == 3
    assert np.array_equal(ckpt['meta']['arr'], np.arange(3.))


def test_foreign_objects_are_refused_unless_trusted(tmp_path, monkeypatch,
                                                    capsys):
    path = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={}, meta=Gadget()), str(path))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UnsafeCheckpointError) as err:
        CheckpointLoader.load_checkpoint(str(path))
    assert 'builtins.print' in str(err.value)
    assert TRUST_ENV in str(err.value)
    assert 'this ran' not in capsys.readouterr().out

    monkeypatch.setenv(TRUST_ENV, '1')
    CheckpointLoader.load_checkpoint(str(path))
    assert 'this ran while loading' in capsys.readouterr().out


def test_getattr_only_reaches_history_buffer_statistics(tmp_path):
    from rap_sam.utils.checkpoint import _history_buffer_getattr
    assert _history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (np, 'load'),
                      (torch, 'load'), (HistoryBuffer, '__subclasses__')):
        with pytest.raises(UnsafeCheckpointError):
            _history_buffer_getattr(obj, name)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nowhere.pth'))


def _mapped(path) -> bool:
    with open('/proc/self/maps') as maps:
        return any(str(path) in line for line in maps)


@pytest.mark.parametrize('zipped', [True, False])
def test_mmap_maps_zip_files_and_reads_legacy_ones(tmp_path, zipped):
    from rap_sam.utils.checkpoint import load_local_checkpoint
    path = tmp_path / 'weights.pth'
    weights = dict(w=torch.arange(6.).view(2, 3))
    torch.save(weights, path, _use_new_zipfile_serialization=zipped)
    loaded = load_local_checkpoint(str(path), 'cpu', mmap=True)
    assert torch.equal(loaded['w'], weights['w'])
    assert _mapped(path) == zipped
    del loaded
    assert not _mapped(path)
    read = load_local_checkpoint(str(path), 'cpu')
    assert torch.equal(read['w'], weights['w']) and not _mapped(path)
