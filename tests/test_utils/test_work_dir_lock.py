"""rap_sam.utils.work_dir_lock: the work dir made before any work, and
held by one run at a time, against other processes that take it through
the same functions."""
import errno
import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO
from mmengine.config import Config

from rap_sam.utils import work_dir_lock
from rap_sam.utils.runner_cli import claim_work_dir, launched_rank
from rap_sam.utils.work_dir_lock import (LOCK_NAME, WorkDirError,
                                         WorkDirInUseError, lock_work_dir,
                                         make_work_dir, read_holder)

# A process that takes the work dir argv[1] as a run of kind argv[2], says
# so, and sleeps; with argv[3] == 'fork', after forking a child that sleeps
# too (a data loader worker that outlives its killed parent).
HOLDER = '''import os, sys, time
from rap_sam.utils.work_dir_lock import lock_work_dir
lock = lock_work_dir(sys.argv[1], sys.argv[2])
if sys.argv[3:] == ['fork'] and os.fork() == 0:
    time.sleep(600)
    os._exit(0)
print('locked', flush=True)
time.sleep(600)
'''


def start_holder(work_dir, kind='training', fork=False):
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLDER,
         str(work_dir), kind] + (['fork'] if fork else []),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True)
    assert proc.stdout.readline() == 'locked\n'
    return proc


def kill(proc):
    """SIGKILL the holder alone (not a child it forked), and reap it."""
    proc.kill()
    proc.wait()


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture
def work_dir(tmp_path):
    path = tmp_path / 'work'
    path.mkdir()
    return str(path)


def test_make_work_dir_creates_nested_folders(tmp_path):
    path = str(tmp_path / 'a' / 'b')
    assert make_work_dir(path) == path
    assert os.path.isdir(path)
    assert make_work_dir(path) == path  # an existing folder is fine


def test_a_file_as_work_dir_is_refused_and_kept(tmp_path):
    path = tmp_path / 'f'
    path.write_text('x\n')
    with pytest.raises(WorkDirError) as err:
        make_work_dir(str(path))
    assert str(err.value) == (
        f'The work dir {path} is a file: give --work-dir a folder (it is '
        'created if missing), or move the file away.')
    assert path.read_text() == 'x\n'


def test_a_work_dir_under_a_file_names_the_file(tmp_path):
    (tmp_path / 'f').write_text('x\n')
    path = tmp_path / 'f' / 'sub' / 'work'
    with pytest.raises(WorkDirError) as err:
        make_work_dir(str(path))
    assert str(err.value) == (f'Cannot create the work dir {path}: '
                              f'{tmp_path / "f"} is a file; choose another '
                              '--work-dir.')


def test_a_work_dir_that_cannot_be_created(tmp_path, monkeypatch):
    """A read-only parent (simulated: the tests may run as root, whom
    permissions do not stop)."""

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied', path)

    monkeypatch.setattr(work_dir_lock.os, 'makedirs', refuse)
    path = tmp_path / 'ro' / 'work'
    with pytest.raises(WorkDirError) as err:
        make_work_dir(str(path))
    assert str(err.value) == (f'Cannot create the work dir {path}: '
                              'Permission denied; choose another --work-dir.')


def test_a_work_dir_without_write_permission(work_dir, monkeypatch):

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied', path)

    monkeypatch.setattr(work_dir_lock.os, 'open', refuse)
    with pytest.raises(WorkDirError) as err:
        lock_work_dir(work_dir)
    assert str(err.value) == (
        f'Cannot write in the work dir {work_dir}: Permission denied; '
        'choose a folder you can write to with --work-dir.')


def test_the_lock_file_names_its_holder_and_is_released(work_dir):
    with lock_work_dir(work_dir, 'evaluation'):
        assert read_holder(work_dir) == (os.getpid(), 'evaluation')
        proc = subprocess.run(
            [sys.executable, '-c', HOLDER, work_dir, 'training'],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120)
        # held by this process: the other one is refused
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[-1] == (
            'rap_sam.utils.work_dir_lock.WorkDirInUseError: '
            f'{work_dir} is in use by an evaluation (PID {os.getpid()}): '
            'wait for it or choose another --work-dir.')
    # released: another process takes it
    holder = start_holder(work_dir, 'training')
    try:
        assert read_holder(work_dir) == (holder.pid, 'training')
    finally:
        kill(holder)


def test_a_second_run_is_refused_without_writing(work_dir):
    holder = start_holder(work_dir, 'training')
    try:
        before = open(os.path.join(work_dir, LOCK_NAME)).read()
        for kind, who in (('training', 'another training'), ('evaluation',
                                                             'a training')):
            with pytest.raises(WorkDirInUseError) as err:
                lock_work_dir(work_dir, kind)
            assert str(err.value) == (
                f'{work_dir} is in use by {who} (PID {holder.pid}): wait '
                'for it or choose another --work-dir.')
        assert os.listdir(work_dir) == [LOCK_NAME]
        assert open(os.path.join(work_dir, LOCK_NAME)).read() == before
    finally:
        kill(holder)


def test_a_killed_holder_leaves_no_lock_even_with_children(work_dir):
    """SIGKILL of the holder frees the work dir at once, though a child it
    forked (as data loader workers are) still runs."""
    holder = start_holder(work_dir, 'training', fork=True)
    try:
        kill(holder)
        with lock_work_dir(work_dir, 'training'):
            assert read_holder(work_dir) == (os.getpid(), 'training')
    finally:
        kill_group(holder)


@pytest.mark.parametrize('launcher, env, rank', [
    ('none', {
        'RANK': '3'
    }, 0),
    ('pytorch', {
        'RANK': '3'
    }, 3),
    ('slurm', {
        'SLURM_PROCID': '1'
    }, 1),
    ('mpi', {
        'OMPI_COMM_WORLD_RANK': '2'
    }, 2),
    ('pytorch', {}, 0),
])
def test_launched_rank(monkeypatch, launcher, env, rank):
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launched_rank(launcher) == rank


def test_only_rank_0_of_a_launched_run_takes_the_lock(tmp_path, monkeypatch):
    """The other ranks of the run that holds the work dir go on; its rank 0
    (or another run's) is refused."""
    cfg = Config(dict(work_dir=str(tmp_path / 'new' / 'work')))
    holder = None
    try:
        monkeypatch.setenv('RANK', '0')
        with claim_work_dir(cfg, 'pytorch', 'training'):
            assert read_holder(cfg.work_dir) == (os.getpid(), 'training')
        holder = start_holder(cfg.work_dir, 'training')
        monkeypatch.setenv('RANK', '1')
        with claim_work_dir(cfg, 'pytorch', 'training'):
            pass
        assert read_holder(cfg.work_dir) == (holder.pid, 'training')
        monkeypatch.setenv('RANK', '0')
        with pytest.raises(WorkDirInUseError):
            with claim_work_dir(cfg, 'pytorch', 'training'):
                pass
    finally:
        if holder is not None:
            kill(holder)
