"""Checks that turn bad dataset input into messages naming the problem.

mmdet's own errors for a missing data root or a broken image are a bare
``FileNotFoundError`` deep in pycocotools or an ``AttributeError`` on
``None``; these helpers say which file is wrong and what layout was expected.
Only local paths are checked; URLs and other storage backends pass through.

Training tolerates some bad files (:class:`ConcatOVDataset` skips and counts
the samples whose files are missing, damaged or at odds with their
annotation, see :func:`missing_files_tolerated`, :func:`damaged_file` and
:class:`SampleContentError`); evaluation does not.
"""
import contextlib
import logging
import os
import os.path as osp
import re
from typing import Iterable, List, Optional

import cv2
import numpy as np
from mmengine.logging import print_log

from rap_sam.utils.user_errors import UserError


class DatasetLayoutError(UserError, FileNotFoundError):
    """The data root, an annotation file or listed files are missing."""


class DatasetContentError(UserError, ValueError):
    """An annotation file does not hold what the dataset expects."""


class SampleLoadError(RuntimeError):
    """One sample could not be loaded; the message names its files.

    ``problems`` lists the files found missing or undecodable (empty when
    they all read fine: then the pipeline, not the data, failed).
    """

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class DamagedSampleError(SampleLoadError, UserError):
    """One sample's files are missing or cannot be decoded; ``problems``
    names them. Training skips and counts the sample; evaluation, which
    must read every sample, stops with the message."""


class SampleContentError(SampleLoadError, DatasetContentError):
    """One sample's files read fine but contradict its annotation (a
    panoptic PNG holding none of the segment ids listed for it).

    ``problems`` names the file, so training skips and counts the sample as
    it does a damaged file; evaluation stops with the message. A wrong file
    rather than a broken one, yet the same kind of mistake to the user.
    """


#: While set (by :func:`missing_files_tolerated`), the largest fraction of
#: listed files that may be missing before :func:`check_files_exist` stops.
_missing_tolerance: Optional[float] = None


@contextlib.contextmanager
def missing_files_tolerated(max_fraction: float):
    """Within this context :func:`check_files_exist` only warns while at
    most ``max_fraction`` of the listed files are missing (training skips
    those samples); more than that is a wrong data root or prefix."""
    global _missing_tolerance
    previous, _missing_tolerance = _missing_tolerance, max_fraction
    try:
        yield
    finally:
        _missing_tolerance = previous


@contextlib.contextmanager
def entries_complete(ann_file: str, kind: str):
    """An annotation file missing a key its format has (a segment without
    ``category_id``, an image without ``segments_info``) becomes one
    :class:`DatasetContentError` naming the file and the key, where the
    readers (pycocotools, mmdet) raise a bare ``KeyError``; ``kind`` names
    the format in the message."""
    try:
        yield
    except KeyError as err:
        key = err.args[0] if err.args else '?'
        what = (f'has an entry without {key!r}' if isinstance(key, str) else
                f'refers to {key!r}, which it does not define')
        raise DatasetContentError(
            f"'{ann_file}' {what}: it is not a complete {kind} file; use the "
            'file as downloaded (or as the converter wrote it).') from err


def is_local(path: Optional[str]) -> bool:
    return bool(path) and '://' not in str(path)


def layout_line(layout: str) -> str:
    """``layout`` (a dataset's multi-line picture of its folder, first line
    the data root) as one line: the tools report an error in one line."""
    items = []
    for line in layout.splitlines()[1:]:
        for item in re.split(r'\s{2,}', line.strip()):
            if item.startswith('(') and items:
                items[-1] += f' {item}'
            elif item:
                items.append(item)
    return ', '.join(items)


def data_root_hint(data_root: Optional[str]) -> str:
    """What to do about a data root that is not where the config says."""
    root = str(data_root or 'data/DATASET/').rstrip('/') or '/'
    return (f'link your copy there (ln -s /path/to/{osp.basename(root)} '
            f'{root}) or point the dataset\'s data_root at it with '
            '--cfg-options (tools/test.py: '
            'test_dataloader.dataset.data_root=DIR/; tools/train.py: the '
            "data_root of each dataset under the recipe's "
            'train_dataloader.dataset; see data/README.md)')


def check_annotation_file(ann_file: str, data_root: Optional[str],
                          layout: str) -> None:
    """Raise :class:`DatasetLayoutError` when the data root or the annotation
    file is missing, naming what ``layout`` expects under the data root."""
    expected = layout_line(layout)
    if is_local(data_root) and not osp.isdir(data_root):
        raise DatasetLayoutError(
            f"Data root '{data_root}' does not exist (it should hold "
            f'{expected}); {data_root_hint(data_root)}')
    if is_local(ann_file) and not osp.isfile(ann_file):
        raise DatasetLayoutError(
            f"Annotation file '{ann_file}' not found. Expected layout: "
            f'{expected}; check data_root and ann_file (see data/README.md)')


def check_files_exist(paths: Iterable[str], what: str, ann_file: str,
                      layout: str) -> None:
    """Raise when any of ``paths`` (listed by ``ann_file``) is missing."""
    paths = [p for p in paths if is_local(p)]
    missing = [p for p in paths if not osp.isfile(p)]
    if not missing:
        return
    examples = ', '.join(f"'{p}'" for p in missing[:3])
    summary = (f'{len(missing)} of {len(paths)} {what} listed in '
               f"'{ann_file}' are missing, e.g. {examples}")
    tolerance = _missing_tolerance
    if tolerance is not None and len(missing) <= tolerance * len(paths):
        print_log(
            f'{summary}; training skips the samples that need them.',
            logger='current',
            level=logging.WARNING)
        return
    limit = ('' if tolerance is None else
             f' (training skips samples with missing files while they are '
             f'at most {tolerance:.0%} of them)')
    raise DatasetLayoutError(
        f'{summary}{limit}. Expected layout: {layout_line(layout)}; check '
        "the dataset's data_root and data_prefix (see data/README.md)")


_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'
_JPEG_EOI, _JPEG_SOS = b'\xff\xd9', b'\xff\xda'


def file_damage(path: Optional[str]) -> Optional[str]:
    """Why the image file ``path`` cannot be read whole, in a few words
    (``'missing'``, ``'empty'``, ``'a truncated PNG'``, ``'a truncated
    JPEG'``), or None.

    Cheap enough for every training sample (it reads the file's first and
    last bytes): a missing or empty file, a PNG without its closing IEND
    chunk or a JPEG without an end-of-image marker after its last scan,
    i.e. a truncated one. OpenCV 4 decodes a truncated JPEG with only a
    warning, grey below the cut; found here, a bad file costs no decoding.
    """
    if not is_local(path):
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return 'missing'
    if size == 0:
        return 'empty'
    with open(path, 'rb') as f:
        head = f.read(8)
        f.seek(max(size - len(_PNG_END), 0))
        tail = f.read()
        if head.startswith(b'\x89PNG') and not tail.endswith(_PNG_END):
            f.seek(0)
            if b'IEND' not in f.read():  # data after IEND is legal
                return 'a truncated PNG'
        elif head.startswith(b'\xff\xd8') and not tail.endswith(_JPEG_EOI):
            f.seek(0)
            data = f.read()  # padding after the end marker is legal
            if data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS):
                return 'a truncated JPEG'
    return None


def damaged_file(path: Optional[str]) -> Optional[str]:
    """:func:`file_damage` as a sentence naming the file (``"'x.jpg' is a
    truncated JPEG"``), or None."""
    damage = file_damage(path)
    if damage is None:
        return None
    return f"'{path}' " + ('does not exist'
                           if damage == 'missing' else f'is {damage}')


def file_problems(paths: Iterable[Optional[str]]) -> List[str]:
    """Describe the files among ``paths`` that are missing or that OpenCV
    cannot decode (an empty list when all of them read fine)."""
    problems = []
    for path in paths:
        if not is_local(path):
            continue
        if not osp.isfile(path):
            problems.append(f"'{path}' does not exist")
            continue
        data = np.fromfile(path, dtype=np.uint8)
        if data.size == 0 or cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is None:
            problems.append(f"'{path}' is not a readable image")
        else:  # OpenCV decodes what it can of a truncated JPEG
            problem = damaged_file(path)
            if problem:
                problems.append(problem)
    return problems


def first_few(items: Iterable, limit: int = 5) -> str:
    """The first ``limit`` of ``items`` comma-separated, then how many more
    there are: a message names a few, not thousands."""
    items = [str(item) for item in items]
    more = f' (+{len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def sample_load_error(dataset: str, idx, paths: List[Optional[str]],
                      err: Exception) -> SampleLoadError:
    """The error to raise when the pipeline failed on sample ``idx``."""
    if isinstance(err, SampleLoadError):
        # The pipeline named the bad file already (a PNG that matches none
        # of its segments): keep its type and problems, so that training
        # still skips the sample, and add where it was.
        return type(err)(f'{dataset}: sample {idx}: {err}', err.problems)
    problems = file_problems(paths)
    if problems:
        # The decoder's own error (OpenCV's assertion) says nothing more.
        return DamagedSampleError(
            f'{dataset}: sample {idx} could not be loaded: '
            f"{'; '.join(problems)}. Copy the file again from the dataset's "
            'source (data/README.md).', problems)
    shown = first_few([f"'{p}'" for p in paths if p], 3)
    return SampleLoadError(
        f'{dataset}: sample {idx} could not be loaded: files {shown}. '
        f'Cause: {type(err).__name__}: {err}')
