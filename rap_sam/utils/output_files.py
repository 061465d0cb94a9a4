"""Writing results without losing data.

The demos and the web app write their results through these helpers:

- every file is written to a temporary name in its own folder and renamed
  over the final name only once complete (``os.replace`` is atomic on one
  file system), so a crash, a full disk or Ctrl+C never leaves a truncated
  result, and an earlier result stays intact until its replacement is whole;
- :func:`result_stems` gives inputs that share a stem (``pic.jpg``,
  ``pic.png``) distinct result names (``pic_jpg``, ``pic_png``);
- :func:`check_outputs` refuses, before any work, to write over an input, or
  over an earlier result unless asked to; without ``overwrite`` the results
  it checked are then published without replacing anything, so that a run
  writing to the same folder meanwhile (same names, no ``--overwrite``)
  makes this one fail with a message instead of silently replacing its
  results, and the files of a pair (``NAME.png`` and ``NAME.json``) never
  come from two runs;
- file-system failures (the folder is a file, read-only, the disk is full)
  become :class:`OutputError`, a one-line message for the user.
"""
import contextlib
import errno
import json
import os
import os.path as osp
import sys
import tempfile
import uuid
from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from .user_errors import UserError


class OutputError(UserError, OSError):
    """A result cannot be written where the user asked for it."""


_ADVICE = {
    errno.ENOSPC: 'free some space or choose another output folder',
    errno.EDQUOT: 'free some space or choose another output folder',
    errno.EACCES: 'choose a folder you can write to',
    errno.EPERM: 'choose a folder you can write to',
    errno.EROFS: 'choose a folder on a writable file system',
}


def output_error(path: str, err: OSError) -> OutputError:
    """``err`` as a one-line message naming ``path`` and what to do."""
    reason = err.strerror or str(err) or type(err).__name__
    advice = _ADVICE.get(err.errno, 'choose another output folder')
    return OutputError(f'Cannot write {path}: {reason}; {advice}.')


def make_out_dir(out_dir: str) -> str:
    """Create ``out_dir`` if needed and check that files can be made in it.

    Raises:
        OutputError: it is a file, cannot be created or is not writable.
    """
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise OutputError(f'The output folder {out_dir} is a file: choose a '
                          'folder (it is created if missing).')
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise output_error(out_dir, err) from err
    check_writable(out_dir)
    return out_dir


def check_writable(folder: str) -> None:
    """Files can be made in the existing ``folder``: tried with a probe
    file, removed again. os.access answers for the real user id, says yes
    to root for folders the kernel refuses to write in (/sys) and knows
    nothing of some mounts.

    Raises:
        OutputError: naming ``folder``, the system's reason and what to do.
    """
    probe = osp.join(folder, f'.write-test-{uuid.uuid4().hex[:8]}')
    try:
        with open(probe, 'xb'):
            pass
        os.remove(probe)
    except OSError as err:
        raise output_error(folder, err) from err


@contextlib.contextmanager
def run_out_dir(out_dir: str) -> Iterator[str]:
    """:func:`make_out_dir` for one run: the folders it creates are removed
    again when the run ends with nothing written in them, so a run that
    fails before its first result leaves no empty folder behind."""
    made = []
    path = osp.abspath(out_dir)
    while not osp.lexists(path):
        made.append(path)
        path = osp.dirname(path)
    make_out_dir(out_dir)
    try:
        yield out_dir
    finally:
        for folder in made:  # the deepest first
            try:
                os.rmdir(folder)
            except OSError:  # holds results (or was removed meanwhile)
                break


def temp_path(path: str) -> str:
    """A unique hidden name beside ``path`` with its extension (which
    OpenCV's writers read to choose the format)."""
    folder, name = osp.split(path)
    ext = osp.splitext(name)[1]
    return osp.join(folder, f'.{name}.{uuid.uuid4().hex[:8]}.part{ext}')


def discard(tmp: str) -> None:
    """Remove a temporary file, if it is there."""
    with contextlib.suppress(OSError):
        os.remove(tmp)


#: The results :func:`check_outputs` cleared without ``overwrite`` (absolute
#: paths), each mapped to its pair's record of what this process published:
#: ``{path: (st_dev, st_ino)}``, shared by the paths of one stem.
_GUARDED: Dict[str, Dict[str, Tuple[int, int]]] = {}
#: Those of them cleared alone: a file the user named (a tool's ``--out``),
#: not a result among others in an output folder.
_NAMED_FILES: Set[str] = set()


def _choose_another(named_file: bool) -> str:
    """The advice for a result whose name is taken: a file the user named
    is named again, results in a folder go to another folder."""
    return ('choose another output file'
            if named_file else 'choose another output folder')


# os.link's errors where the file system has no hard links (FAT, exFAT, some
# network and FUSE file systems; Linux says EPERM).
_NO_HARD_LINKS = {
    errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP,
    getattr(errno, 'ENOTSUP', errno.EOPNOTSUPP)
}


def _identity(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _publish_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has it yet.

    Raises:
        FileExistsError: ``path`` exists; ``tmp`` is left as it is.
    """
    try:
        # A hard link never replaces a name: the check and the publishing
        # are one step, which no other process can come between.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
    else:
        discard(tmp)
        return
    # No hard links here: reserve the name with an empty file (O_EXCL is
    # atomic too), then move the result over the reservation.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        reserved = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        if _identity(path) == (reserved.st_dev, reserved.st_ino):
            with contextlib.suppress(OSError):
                os.remove(path)
        raise


def _withdraw(published: Dict[str, Tuple[int, int]]) -> None:
    """Remove the files of a pair that this process published, each only
    while it is still the one it published (a run with ``--overwrite`` may
    have replaced it since: that file is the other run's to keep)."""
    for path, identity in list(published.items()):
        if _identity(path) == identity:
            with contextlib.suppress(OSError):
                os.remove(path)
    published.clear()


def commit(tmp: str, path: str) -> None:
    """Move the complete file ``tmp`` to ``path`` in one step.

    A result that :func:`check_outputs` cleared without ``overwrite`` does
    not replace a file that appeared at ``path`` since (another run's); then
    the file of its pair that this process already published is removed as
    well, so that the pair is never mixed. Anything else replaces ``path``.

    Raises:
        OutputError: ``tmp`` is missing or empty (a writer that failed
            silently, e.g. OpenCV's on a full disk), syncing or renaming
            failed, or ``path`` appeared meanwhile; ``tmp`` is removed and
            ``path`` is as it was.
    """
    key = osp.abspath(path)
    published = _GUARDED.get(key)
    try:
        if not osp.isfile(tmp) or osp.getsize(tmp) == 0:
            raise OutputError(f'Cannot write {path}: nothing was written '
                              '(is the disk full?); choose another output '
                              'folder.')
        # The data reaches the disk before the rename does: after a power
        # cut the name holds the old file or the new one, never an empty
        # one.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        identity = _identity(tmp)
        if published is None or (key in published
                                 and _identity(key) == published[key]):
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
        if published is not None:
            published[key] = identity
    except FileExistsError as err:
        discard(tmp)
        if published is not None:
            _withdraw(published)
        named = key in _NAMED_FILES
        raise OutputError(
            f'{path} appeared while this run was working (another run '
            f'writing to the same {"file" if named else "folder"}?): '
            f'{_choose_another(named)} or pass --overwrite.') from err
    except OSError as err:
        discard(tmp)
        if isinstance(err, OutputError):
            raise
        raise output_error(path, err) from err


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` to write to; on success it
    becomes ``path`` (:func:`commit`), on any error it is removed.

    Raises:
        OutputError: writing failed with an OSError, or :func:`commit` did.
    """
    tmp = temp_path(path)
    try:
        yield tmp
    except OSError as err:
        discard(tmp)
        if isinstance(err, OutputError):
            raise
        raise output_error(path, err) from err
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, path)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, 'xb') as f:
            f.write(data)


def write_json(path: str, obj) -> None:
    """``json.dump(obj)`` to ``path``, atomically."""
    write_bytes(path, json.dumps(obj).encode('utf-8'))


def write_image(path: str, img: np.ndarray) -> None:
    """An image (BGR) to ``path``, in the format its extension names,
    atomically."""
    ok, buf = cv2.imencode(osp.splitext(path)[1], img)
    if not ok:
        raise OutputError(f'Cannot encode the image for {path}.')
    write_bytes(path, buf.tobytes())


#: What OpenCV's FFmpeg writer prints (with fprintf, whatever the log
#: level) when a codec tag is not its container's usual one, as webm's VP80
#: is for every file, though the file is written.
_CODEC_TAG_NOTE = 'OpenCV: FFMPEG: tag '


def open_video_writer(path: str, fourcc: str, fps: float,
                      size: Tuple[int, int]) -> cv2.VideoWriter:
    """``cv2.VideoWriter`` for ``path`` without OpenCV's codec-tag note on
    stderr; anything else written to stderr meanwhile is passed on."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to keep clean
        return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps,
                               size)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc),
                                     fps, size)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        lines = caught.read().decode(errors='replace').splitlines(True)
    rest = ''.join(
        line for line in lines if not line.startswith(_CODEC_TAG_NOTE))
    if rest:
        sys.stderr.write(rest)
        sys.stderr.flush()
    return writer


def result_stems(inputs: Sequence[str],
                 out_dir: str,
                 suffix: str = '') -> List[str]:
    """``out_dir/NAME`` for each input, distinct for distinct inputs.

    NAME is the input's stem plus ``suffix`` (``photo.jpg`` -> ``photo``),
    or, where several inputs share a stem, the stem and the extension
    (``pic.jpg``, ``pic.png`` -> ``pic_jpg``, ``pic_png``); a clash that
    remains gets ``_2``, ``_3`` ...
    """
    names = [osp.splitext(osp.basename(osp.normpath(p)))[0] for p in inputs]
    shared = Counter(names)
    for i, path in enumerate(inputs):
        if shared[names[i]] > 1:
            ext = osp.splitext(osp.normpath(path))[1].lstrip('.')
            names[i] = f'{names[i]}_{ext}' if ext else names[i]
    taken, stems = set(), []
    for name in names:
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f'{name}_{n}'
        taken.add(unique)
        stems.append(osp.join(out_dir, unique + suffix))
    return stems


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return False


def check_new_file(path: str,
                   overwrite: bool,
                   kind: str,
                   option: str = '--out') -> None:
    """A tool's one output file (``option``, a ``kind`` file) can be
    written at the end of its run: checked before the run, which otherwise
    failed at its end or replaced an existing file unasked. Without
    ``overwrite``, :func:`commit` then publishes it only if its name is
    still free (as :func:`check_outputs` does).

    Raises:
        OutputError: ``path`` is a folder, lies under a file, exists and
            ``overwrite`` is False, or its folder (the nearest one that
            exists) cannot be written in.
    """
    if osp.isdir(path):
        raise OutputError(f'{option} {path} is a folder: name a {kind} '
                          'file.')
    if osp.lexists(path) and not overwrite:
        raise OutputError(f'{option} {path} exists: name another file, or '
                          'pass --overwrite to replace it.')
    folder = osp.dirname(osp.abspath(path))
    while not osp.lexists(folder):
        folder = osp.dirname(folder)
    if not osp.isdir(folder):
        raise OutputError(
            f'{option} {path}: {folder} is a file, not a folder.')
    check_writable(folder)
    _guard([path], overwrite)


def check_outputs(outputs: Sequence[str],
                  inputs: Sequence[str],
                  overwrite: bool = False) -> None:
    """Refuse to write over an input, or over an earlier result unless
    ``overwrite``.

    Without ``overwrite``, :func:`commit` (and so every writer here) then
    publishes each of ``outputs`` only if its name is still free, and
    treats the outputs that share a stem (``NAME.png``, ``NAME.json``) as
    one pair.

    A single output is taken for a file the user named (a tool's
    ``--out``), several for results in an output folder: the messages
    advise another file or another folder.

    Raises:
        OutputError: an output is one of ``inputs`` (whatever
            ``overwrite`` says), or exists and ``overwrite`` is False.
    """
    named_file = len(outputs) == 1
    existing = [p for p in outputs if osp.lexists(p)]
    for out in existing:
        for inp in inputs:
            if _same_file(out, inp):
                raise OutputError(
                    f'The result {out} would replace the input {inp}: '
                    f'{_choose_another(named_file)}.')
    if existing and not overwrite:
        if named_file:
            raise OutputError(
                f'{existing[0]} already exists: pass --overwrite to replace '
                f'it, or {_choose_another(True)}.')
        more = len(existing) - 1
        others = f' (and {more} more)' if more else ''
        raise OutputError(
            f'{existing[0]} already exists{others}: pass --overwrite to '
            f'replace earlier results, or {_choose_another(False)}.')
    _guard(outputs, overwrite)


def _guard(outputs: Sequence[str], overwrite: bool) -> None:
    """Without ``overwrite``, have :func:`commit` publish each of
    ``outputs`` only while its name is free, the outputs that share a stem
    as one pair; with it, let them replace what is there."""
    pairs: Dict[str, Dict[str, Tuple[int, int]]] = {}
    for out in outputs:
        key = osp.abspath(out)
        if overwrite:
            _GUARDED.pop(key, None)
        else:
            _GUARDED[key] = pairs.setdefault(osp.splitext(key)[0], {})
        if len(outputs) == 1:
            _NAMED_FILES.add(key)
        else:
            _NAMED_FILES.discard(key)
