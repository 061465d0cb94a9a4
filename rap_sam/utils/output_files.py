"""Writing results without losing data.

The demos and the web app write their results through these helpers:

- every file is written to a temporary name in its own folder and renamed
  over the final name only once complete (``os.replace`` is atomic on one
  file system), so a crash, a full disk or Ctrl+C never leaves a truncated
  result, and an earlier result stays intact until its replacement is whole;
- :func:`result_stems` gives inputs that share a stem (``pic.jpg``,
  ``pic.png``) distinct result names (``pic_jpg``, ``pic_png``);
- :func:`check_outputs` refuses, before any work, to write over an input, or
  over an earlier result unless asked to;
- file-system failures (the folder is a file, read-only, the disk is full)
  become :class:`OutputError`, a one-line message for the user.
"""
import contextlib
import errno
import json
import os
import os.path as osp
import uuid
from collections import Counter
from typing import Iterator, List, Sequence

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
    # os.access answers for the real user id and knows nothing of read-only
    # mounts, so try it.
    probe = osp.join(out_dir, f'.write-test-{uuid.uuid4().hex[:8]}')
    try:
        with open(probe, 'xb'):
            pass
        os.remove(probe)
    except OSError as err:
        raise output_error(out_dir, err) from err
    return out_dir


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


def commit(tmp: str, path: str) -> None:
    """Move the complete file ``tmp`` to ``path`` in one step.

    Raises:
        OutputError: ``tmp`` is missing or empty (a writer that failed
            silently, e.g. OpenCV's on a full disk), or syncing or renaming
            failed; ``tmp`` is removed and ``path`` is as it was.
    """
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
        os.replace(tmp, path)
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


def check_outputs(outputs: Sequence[str],
                  inputs: Sequence[str],
                  overwrite: bool = False) -> None:
    """Refuse to write over an input, or over an earlier result unless
    ``overwrite``.

    Raises:
        OutputError: an output is one of ``inputs`` (whatever
            ``overwrite`` says), or exists and ``overwrite`` is False.
    """
    existing = [p for p in outputs if osp.lexists(p)]
    for out in existing:
        for inp in inputs:
            if _same_file(out, inp):
                raise OutputError(
                    f'The result {out} would replace the input {inp}: '
                    'choose another output folder.')
    if existing and not overwrite:
        more = len(existing) - 1
        others = f' (and {more} more)' if more else ''
        raise OutputError(
            f'{existing[0]} already exists{others}: pass --overwrite to '
            'replace earlier results, or choose another output folder.')
