"""Checks that turn bad dataset input into messages naming the problem.

mmdet's own errors for a missing data root or a broken image are a bare
``FileNotFoundError`` deep in pycocotools or an ``AttributeError`` on
``None``; these helpers say which file is wrong and what layout was expected.
Only local paths are checked; URLs and other storage backends pass through.
"""
import os.path as osp
from typing import Iterable, List, Optional

import cv2
import numpy as np

from rap_sam.utils.user_errors import UserError


class DatasetLayoutError(UserError, FileNotFoundError):
    """The data root, an annotation file or listed files are missing."""


class DatasetContentError(UserError, ValueError):
    """An annotation file does not hold what the dataset expects."""


class SampleLoadError(RuntimeError):
    """One sample could not be loaded; the message names its files."""


def is_local(path: Optional[str]) -> bool:
    return bool(path) and '://' not in str(path)


def check_annotation_file(ann_file: str, data_root: Optional[str],
                          layout: str) -> None:
    """Raise :class:`DatasetLayoutError` when the data root or the annotation
    file is missing, quoting the expected ``layout``."""
    hint = f'Expected layout:\n{layout}\nSee data/README.md.'
    if is_local(data_root) and not osp.isdir(data_root):
        raise DatasetLayoutError(
            f"Data root '{data_root}' does not exist. {hint}")
    if is_local(ann_file) and not osp.isfile(ann_file):
        raise DatasetLayoutError(
            f"Annotation file '{ann_file}' not found. {hint}")


def check_files_exist(paths: Iterable[str], what: str, ann_file: str,
                      layout: str) -> None:
    """Raise when any of ``paths`` (listed by ``ann_file``) is missing."""
    paths = [p for p in paths if is_local(p)]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        examples = ', '.join(f"'{p}'" for p in missing[:3])
        raise DatasetLayoutError(
            f'{len(missing)} of {len(paths)} {what} listed in '
            f"'{ann_file}' are missing, e.g. {examples}. Expected "
            f'layout:\n{layout}\nSee data/README.md.')


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
    return problems


def sample_load_error(dataset: str, idx, paths: List[Optional[str]],
                      err: Exception) -> SampleLoadError:
    """The error to raise when the pipeline failed on sample ``idx``."""
    problems = file_problems(paths)
    if problems:
        detail = '; '.join(problems)
    else:
        shown = ', '.join(f"'{p}'" for p in paths[:3] if p)
        more = f' (+{len(paths) - 3} more)' if len(paths) > 3 else ''
        detail = f'files {shown}{more}'
    return SampleLoadError(
        f'{dataset}: sample {idx} could not be loaded: {detail}. '
        f'Cause: {type(err).__name__}: {err}')
