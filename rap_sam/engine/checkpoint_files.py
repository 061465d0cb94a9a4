"""Checkpoint files that survive a kill: atomic writes, and finding the
newest complete checkpoint to resume from.

A file is written to a temporary name in its final directory, flushed to
disk (fsync) and renamed over the final name (``os.replace``, atomic on
POSIX and Windows within one file system): a reader, or a run resumed
after SIGKILL or a power cut, sees the old file or the new one, never a
part of one.
"""
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional

from mmengine.logging import print_log

TMP_SUFFIX = '.tmp'


def tmp_name(filename: str) -> str:
    """The hidden temporary name ``filename`` is written to first; a kill
    can leave it behind, :func:`remove_stale_tmp_files` clears it."""
    return f'.{filename}{TMP_SUFFIX}'


def fsync_dir(dirname: str) -> None:
    """Flush a directory entry (a rename) to disk where the OS allows."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp_path: str, path: str) -> None:
    """Flush ``tmp_path`` to disk, then rename it over ``path``."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    dirname, filename = osp.split(osp.abspath(path))
    tmp_path = osp.join(dirname, tmp_name(filename))
    with open(tmp_path, 'w') as f:
        f.write(text)
    commit_file(tmp_path, path)


def remove_stale_tmp_files(dirname: str) -> List[str]:
    """Remove the temporary files a killed save left in ``dirname``."""
    removed = []
    if not osp.isdir(dirname):
        return removed
    for name in os.listdir(dirname):
        if name.startswith('.') and name.endswith(TMP_SUFFIX):
            os.remove(osp.join(dirname, name))
            removed.append(name)
    return removed


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file.

    torch writes a zip archive whose directory sits at the end of the
    file, so a truncated file has none; the CRC of every entry is checked
    too (reading the file once), which catches damage in the middle.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            return (any(
                n.endswith('/data.pkl') or n == 'data.pkl' for n in names)
                    and archive.testzip() is None)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _checkpoint_number(name: str, filename_tmpl: str) -> Optional[int]:
    head, _, tail = filename_tmpl.partition('{}')
    match = re.fullmatch(re.escape(head) + r'(\d+)' + re.escape(tail), name)
    return int(match.group(1)) if match else None


def find_resumable_checkpoint(
        work_dir: str,
        ckpt_dir: Optional[str] = None,
        filename_tmpl: str = 'epoch_{}.pth') -> Optional[str]:
    """The checkpoint a resumed run should continue from.

    The one ``WORK_DIR/last_checkpoint`` names, when it is complete;
    otherwise (it is missing or truncated, as a kill in the middle of a
    save by mmengine's own hook leaves it) the complete checkpoint named
    by ``filename_tmpl`` with the highest number in ``ckpt_dir`` (default:
    the directory ``last_checkpoint`` points into, else ``work_dir``),
    with a warning. None when there is nothing to resume from.
    """
    recorded = None
    save_file = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(save_file):
        with open(save_file) as f:
            recorded = f.read().strip() or None
    if recorded and '://' in recorded:
        return recorded  # remote storage: mmengine's rule, unchecked
    if recorded and is_complete_checkpoint(recorded):
        return recorded
    if ckpt_dir is None:
        ckpt_dir = osp.dirname(recorded) if recorded else work_dir
    numbered = []
    if osp.isdir(ckpt_dir):
        for name in os.listdir(ckpt_dir):
            number = _checkpoint_number(name, filename_tmpl)
            if number is not None:
                numbered.append((number, osp.join(ckpt_dir, name)))
    for _, path in sorted(numbered, reverse=True):
        if is_complete_checkpoint(path):
            if recorded:
                state = ('is truncated or damaged'
                         if osp.exists(recorded) else 'does not exist')
                print_log(
                    f'{save_file} names {recorded}, which {state}; '
                    f'resuming from {path}, the newest complete checkpoint.',
                    logger='current',
                    level=logging.WARNING)
            return path
    if recorded:
        print_log(
            f'{save_file} names {recorded}, which is missing or truncated, '
            f'and {ckpt_dir} holds no other complete checkpoint; training '
            'starts from scratch.',
            logger='current',
            level=logging.WARNING)
    return None
