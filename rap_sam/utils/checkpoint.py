"""Loading checkpoints under torch >= 2.6, safely.

torch >= 2.6 loads with ``weights_only=True`` by default, which refuses the
numpy arrays and mmengine ``HistoryBuffer`` objects that mmengine itself
writes into a checkpoint's ``meta`` and ``message_hub``. Turning the check
off for every file would let any downloaded checkpoint run code. Instead,
importing :mod:`rap_sam` registers a local-file loader with mmengine's
``CheckpointLoader`` that stays in weights-only mode and allow-lists exactly
what mmengine writes:

- numpy arrays, dtypes and scalars;
- ``mmengine.logging.HistoryBuffer``, whose pickled state names its
  statistics methods through ``getattr``: that ``getattr`` is replaced by
  one that only returns those methods of a ``HistoryBuffer``.

Anything else in a file is refused with a message naming the offending
globals. To load such a file you trust, opt in explicitly: set
``RAP_SAM_TRUST_CHECKPOINTS=1`` (or pass ``--trust-checkpoint`` to the
tools), which loads with ``weights_only=False``.
"""
import os
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .user_errors import UserError

TRUST_ENV = 'RAP_SAM_TRUST_CHECKPOINTS'


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """The file holds objects outside the allow-list."""


class CheckpointMismatchError(UserError, RuntimeError):
    """The state dict does not fit the model."""


# mmengine's built-in statistics; the table may be filled lazily, so the
# names are listed here as well.
_HISTORY_BUFFER_STATISTICS = {'min', 'max', 'mean', 'current'}


def _history_buffer_getattr(obj, name):
    # HistoryBuffer pickles its statistics table as getattr(HistoryBuffer,
    # 'mean') etc.; nothing else may go through getattr.
    allowed = _HISTORY_BUFFER_STATISTICS | set(
        getattr(HistoryBuffer, '_statistics_methods', {}))
    is_buffer = obj is HistoryBuffer or isinstance(obj, HistoryBuffer)
    if is_buffer and name in allowed:
        return getattr(obj, name)
    raise UnsafeCheckpointError(
        f'refusing getattr({type(obj).__name__}, {name!r}) while loading a '
        'checkpoint')


def _numpy_globals() -> list:
    """numpy's pickling globals under both their numpy 1 and 2 names."""
    multiarray = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype]
    for name in ('_reconstruct', 'scalar'):
        fn = getattr(multiarray.multiarray, name)
        items += [(fn, f'numpy.core.multiarray.{name}'),
                  (fn, f'numpy._core.multiarray.{name}')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        items += [
            cls for cls in vars(dtypes).values()
            if isinstance(cls, type) and issubclass(cls, np.dtype)
        ]
    return items


SAFE_GLOBALS = _numpy_globals() + [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
    (_history_buffer_getattr, '__builtin__.getattr'),
]
_SAFE_NAMES = {
    item[1]
    if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
    for item in SAFE_GLOBALS
}


def trust_all_checkpoints() -> None:
    """Opt in to full unpickling (``weights_only=False``) in this process.

    Only for files from a source you trust: unpickling can run code.
    """
    os.environ[TRUST_ENV] = '1'


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """mmengine's local-file loader, weights-only with mmengine's objects
    allowed; registered for every path without a URL scheme."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint file not found: {filename}')
    if os.environ.get(TRUST_ENV) == '1':
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        try:
            names = [
                name for name in
                torch.serialization.get_unsafe_globals_in_checkpoint(filename)
                if name not in _SAFE_NAMES
            ]
        except Exception:  # not a zip checkpoint: the error says enough
            names = []
        raise UnsafeCheckpointError(
            f'{filename} holds objects that rap_sam does not load by '
            f'default ({", ".join(names) or err}). If you trust the file, '
            f'set {TRUST_ENV}=1 (or pass --trust-checkpoint to the tools) '
            'to load it with weights_only=False.') from err


CheckpointLoader.register_scheme(
    prefixes='', loader=load_local_checkpoint, force=True)


def state_dict_from_checkpoint(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint, DDP prefixes removed."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'expected a state dict, got {type(state_dict).__name__}')
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())
    if metadata is not None:
        state_dict._metadata = metadata
    return state_dict


def check_state_dict(model: torch.nn.Module,
                     state_dict: dict,
                     source: str = 'checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` listing every missing,
    unexpected and wrongly shaped key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f'{k}: checkpoint {tuple(v.shape)} vs model '
        f'{tuple(expected[k].shape)}' for k, v in state_dict.items() if
        k in expected and hasattr(v, 'shape') and v.shape != expected[k].shape
    ]
    problems = []
    for title, keys in (('missing keys', missing),
                        ('unexpected keys', unexpected), ('shape mismatches',
                                                          wrong_shape)):
        if keys:
            problems.append(f'{len(keys)} {title}:\n  ' + '\n  '.join(keys))
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not fit {type(model).__name__}:\n' +
            '\n'.join(problems))


def load_model_weights(model: torch.nn.Module,
                       filename: str,
                       map_location='cpu') -> dict:
    """Load ``filename`` into ``model`` strictly, with a clear error that
    lists every mismatch. Returns the whole checkpoint (e.g. its meta)."""
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location)
    state_dict = state_dict_from_checkpoint(checkpoint)
    check_state_dict(model, state_dict, filename)
    model.load_state_dict(state_dict, strict=True)
    return checkpoint
