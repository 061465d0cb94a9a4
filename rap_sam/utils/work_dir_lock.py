"""The work dir of tools/train.py and tools/test.py: created before any
work, and held by one run at a time.

Both tools write into WORK_DIR (checkpoints, ``last_checkpoint``, the
dumped config) and into WORK_DIR/TIMESTAMP, a folder named after the second
the run started (the log, ``scalars.json``, result files). Two runs in one
work dir replace each other's checkpoints and, started in the same second,
write one log folder together. :func:`lock_work_dir` makes the second run
stop with one line instead, before it writes anything.

The lock is an ``flock`` on WORK_DIR/.lock, which the operating system drops
when the process ends, however it ends (``kill -9``, a crash, a lost node):
a killed training resumes without any cleanup. The file stays, holding the
PID and the kind of the last run that took it, for the message of a run
refused meanwhile. An flock belongs to the open file, which a forked child
(a data loader worker) shares: each child closes its copy as it starts, so
that a training killed with ``kill -9`` frees its work dir at once, not when
its workers notice, seconds later. (A POSIX record lock, ``lockf``, would
need no such care, but any ``open``/``close`` of the file in the holding
process, even to read it, drops it.) Where ``fcntl`` is missing (Windows)
nothing is locked.
"""
import contextlib
import errno
import os
import os.path as osp
import time
from typing import Iterator, Optional, Set, Tuple

from .user_errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: The file in the work dir that the lock is taken on.
LOCK_NAME = '.lock'

# errno of a lock another process holds (Linux says EAGAIN, some systems
# EACCES).
_HELD = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}

# The descriptors of the locks this process holds.
_LOCK_FDS: Set[int] = set()


def _close_inherited_locks() -> None:
    """In a forked child: close the lock descriptors it inherited (the
    parent's stay; the lock ends with the parent alone)."""
    for fd in _LOCK_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _LOCK_FDS.clear()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class WorkDirError(UserError, OSError):
    """The work dir is a file, cannot be created or cannot be written."""


class WorkDirInUseError(UserError):
    """Another run holds the work dir."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _file_in_the_way(path: str) -> Optional[str]:
    """The nearest existing ancestor of ``path`` that is not a folder."""
    parent = osp.dirname(osp.abspath(path))
    while parent and not osp.exists(parent):
        up = osp.dirname(parent)
        if up == parent:
            return None
        parent = up
    return parent if parent and not osp.isdir(parent) else None


def make_work_dir(path: str) -> str:
    """Create the work dir ``path`` if needed.

    Raises:
        WorkDirError: ``path`` is a file, or a folder above it is, or it
            cannot be created (no permission, a read-only file system).
    """
    if osp.exists(path) and not osp.isdir(path):
        raise WorkDirError(
            f'The work dir {path} is a file: give --work-dir a folder (it is '
            'created if missing), or move the file away.')
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        blocker = _file_in_the_way(path)
        reason = f'{blocker} is a file' if blocker else _reason(err)
        raise WorkDirError(f'Cannot create the work dir {path}: {reason}; '
                           'choose another --work-dir.') from err
    return path


def read_holder(path: str) -> Tuple[Optional[int], str]:
    """``(pid, kind)`` recorded in the work dir ``path``'s lock file by
    the run that last took it; ``(None, '')`` when there is none."""
    try:
        with open(osp.join(path, LOCK_NAME)) as f:
            pid, kind = f.read().split(maxsplit=1)
        return int(pid), kind.strip()
    except (OSError, ValueError):
        return None, ''


def _in_use(path: str, kind: str) -> WorkDirInUseError:
    # The holder writes its PID just after taking the lock: wait for it a
    # moment.
    for _ in range(20):
        pid, held_by = read_holder(path)
        if pid is not None:
            break
        time.sleep(0.05)
    if pid is None:
        who = 'another run'
    elif held_by == kind:
        who = f'another {kind} (PID {pid})'
    else:
        article = 'an' if held_by[:1] in 'aeiou' else 'a'
        who = f'{article} {held_by} (PID {pid})'
    return WorkDirInUseError(f'{path} is in use by {who}: wait for it or '
                             'choose another --work-dir.')


class WorkDirLock:
    """The lock of one work dir, held from :func:`lock_work_dir` until
    :meth:`release` (or the end of the process)."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd: Optional[int] = fd

    def release(self) -> None:
        if self._fd is not None:
            _LOCK_FDS.discard(self._fd)
            os.close(self._fd)  # the last descriptor: the lock ends
            self._fd = None

    def __enter__(self) -> 'WorkDirLock':
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_work_dir(path: str, kind: str = 'training') -> WorkDirLock:
    """Take the work dir ``path`` (an existing folder) for this process;
    ``kind`` (``'training'``, ``'evaluation'``) names this run in the
    message of a run refused meanwhile.

    Raises:
        WorkDirInUseError: another process holds it; nothing was written.
        WorkDirError: no file can be written in it.
    """
    lock_file = osp.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WorkDirError(f'Cannot write in the work dir {path}: '
                           f'{_reason(err)}; choose a folder you can write '
                           'to with --work-dir.') from err
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in _HELD:
                    raise _in_use(path, kind) from err
                # No locks on this file system (ENOLCK on some network
                # mounts): run unlocked rather than not at all.
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f'{os.getpid()} {kind}\n'.encode())
    except OSError as err:
        os.close(fd)
        raise WorkDirError(f'Cannot write in the work dir {path}: '
                           f'{_reason(err)}; choose a folder you can write '
                           'to with --work-dir.') from err
    except BaseException:
        os.close(fd)
        raise
    _LOCK_FDS.add(fd)
    return WorkDirLock(path, fd)


@contextlib.contextmanager
def holding_work_dir(path: str,
                     kind: str = 'training',
                     lock: bool = True) -> Iterator[None]:
    """Create the work dir ``path`` (:func:`make_work_dir`) and, with
    ``lock``, hold it for the body (:func:`lock_work_dir`)."""
    make_work_dir(path)
    if not lock:
        yield
        return
    with lock_work_dir(path, kind):
        yield
