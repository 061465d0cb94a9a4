"""Keep an evaluator's files with its dataset's when the command line moves
the dataset.

The COCO panoptic configs spell the metric's ``seg_prefix`` (the panoptic
PNGs) out from their own data root, so ``--cfg-options
test_dataloader.dataset.data_root=DIR/`` alone would leave the metric
reading the PNGs of the default root: a FileNotFoundError at the first
batch, or, worse, the PNGs of another copy of the data set.
"""
import os.path as osp
from typing import Mapping, Optional

from mmengine.logging import print_log

from .user_errors import UserError

#: The loops whose evaluator reads files beside its dataloader's data.
LOOPS = ('test', 'val')


class SegPrefixError(UserError, ValueError):
    """An evaluator's panoptic PNG folder that does not exist."""


def _is_local(path) -> bool:
    return isinstance(path, str) and '://' not in path


def metric_cfgs(cfg, loop: str) -> list:
    """The metric configs of ``{loop}_evaluator`` (one, or a list)."""
    evaluator = cfg.get(f'{loop}_evaluator') or []
    if isinstance(evaluator, (list, tuple)):
        return list(evaluator)
    return [evaluator]


def option_given(options: Mapping, loop: str, field: str) -> bool:
    """Whether ``options`` (``--cfg-options``) set ``{loop}_evaluator``
    whole or its (or one of its metrics') ``field``."""
    key = f'{loop}_evaluator'
    return any(
        k == key or (k.startswith(key + '.') and k.split('.')[-1] == field)
        for k in options)


def _data_moved(options: Mapping, loop: str) -> bool:
    dataset = f'{loop}_dataloader.dataset.'
    return any(
        k == dataset + 'data_root' or k.startswith(dataset + 'data_prefix')
        for k in options)


def loop_runs(cfg, loop: str) -> bool:
    """Whether the config has the ``loop``'s dataloader, evaluator and loop
    (mmengine runs a val loop only with all three)."""
    return all(
        cfg.get(f'{loop}_{part}')
        for part in ('dataloader', 'evaluator', 'cfg'))


def tie_seg_prefixes(cfg, options: Optional[Mapping], check=()) -> None:
    """Make each evaluator (``test_evaluator``, ``val_evaluator``) read the
    panoptic PNGs of its own dataloader's data root: where ``options`` move
    ``{loop}_dataloader.dataset.data_root`` (or its ``data_prefix``) and do
    not set the evaluator's ``seg_prefix``, that becomes the dataset's
    ``data_root`` + ``data_prefix.seg``; each change is logged. A
    ``seg_prefix`` the user gives is kept as it is.

    Args:
        cfg (Config): The config, ``options`` already merged into it.
        options (dict, optional): The ``--cfg-options`` (dotted keys).
        check (iterable[str]): The loops that will run (``'test'``,
            ``'val'``): their evaluators' folders must exist.

    Raises:
        SegPrefixError: a checked evaluator's ``seg_prefix`` is not a
            folder while its dataset's data root is (a missing data root
            is the dataset's to name, with the layout it expects).
    """
    options = options or {}
    check = set(check)
    for loop in LOOPS:
        loader = cfg.get(f'{loop}_dataloader') or {}
        dataset = loader.get('dataset') or {}
        data_root = dataset.get('data_root')
        seg = (dataset.get('data_prefix') or {}).get('seg')
        move = (
            _data_moved(options, loop) and seg and data_root is not None
            and not option_given(options, loop, 'seg_prefix'))
        for metric in metric_cfgs(cfg, loop):
            if 'seg_prefix' not in metric:
                continue
            if move:
                metric.seg_prefix = osp.join(data_root, seg)
                print_log(
                    f'{loop}_evaluator.seg_prefix={metric.seg_prefix} (the '
                    'dataset\'s data_root + data_prefix.seg)',
                    logger='current')
            if loop not in check:
                continue
            prefix = metric.seg_prefix
            if _is_local(data_root) and not osp.isdir(data_root):
                continue
            if _is_local(prefix) and not osp.isdir(prefix):
                raise SegPrefixError(
                    f'{loop}_evaluator.seg_prefix {prefix} is not a folder '
                    f'(the panoptic PNGs of the {loop} annotations); pass '
                    f'--cfg-options {loop}_evaluator.seg_prefix=DIR/, e.g. '
                    f'{osp.join(data_root or "DATA_ROOT", seg or "")}')
