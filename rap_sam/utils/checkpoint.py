"""Loading checkpoints under torch >= 2.6, safely.

torch >= 2.6 loads with ``weights_only=True`` by default, which refuses the
numpy arrays and mmengine ``HistoryBuffer`` objects that mmengine itself
writes into a checkpoint's ``meta`` and ``message_hub``. Turning the check
off for every file would let any downloaded checkpoint run code. Instead,
importing :mod:`rap_sam` registers a local-file loader with mmengine's
``CheckpointLoader`` that stays in weights-only mode and allow-lists exactly
what mmengine's Runner writes:

- numpy arrays, dtypes and scalars, and ``bytes()``, which pickle's
  protocol 2 writes for the data of an *empty* array (an empty
  ``HistoryBuffer``); only the empty call is accepted;
- ``torch.__version__`` (a ``str`` subclass);
- ``mmengine.logging.HistoryBuffer``, whose pickled state names its
  statistics methods through ``getattr``: that ``getattr`` is replaced by
  one that only returns those methods of a ``HistoryBuffer``.

Anything else in a file is refused with a message naming the offending
globals. To load such a file you trust, opt in explicitly: set
``RAP_SAM_TRUST_CHECKPOINTS=1`` (or pass ``--trust-checkpoint`` to the
tools), which loads with ``weights_only=False``.

Before unpickling, the file itself is checked, so that a wrong file gets a
one-line :class:`CheckpointFileError` naming it rather than torch's
``EOFError`` or miniz error: missing, a directory, empty, not a checkpoint at
all (text, HTML, a Git LFS pointer), truncated or damaged. Two things that
would let a small file take unbounded memory are refused too: compressed zip
records (torch.save never writes them; a 1 MB deflated record inflates to
1 GiB) and ``bytearray`` (``bytearray(n)`` allocates and zero-fills ``n``
bytes). :func:`load_model_weights` then compares every tensor's size and
shape with the model's before computing on it, and refuses NaN or infinite
weights.
"""
import os
import os.path as osp
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from typing import Dict, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch.torch_version import TorchVersion

from .user_errors import UserError

TRUST_ENV = 'RAP_SAM_TRUST_CHECKPOINTS'
_TRUST_HINT = (f'If you trust the file, set {TRUST_ENV}=1 (or pass '
               '--trust-checkpoint to the tools) to load it with '
               'weights_only=False.')


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """The file holds objects outside the allow-list."""


class CheckpointMismatchError(UserError, RuntimeError):
    """The state dict does not fit the model."""


class CheckpointFileError(UserError, ValueError):
    """The file is not a readable checkpoint (empty, text, truncated...)."""


class CheckpointNotFoundError(CheckpointFileError, FileNotFoundError):
    """No file at the given path."""


class NonFiniteWeightsError(CheckpointFileError):
    """The checkpoint's weights hold NaN or infinite values."""


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


def _pickled_empty_bytes(*args):
    # Protocol 2 pickles b'' as bytes() and any other bytes through
    # _codecs.encode, so only the empty call is legitimate; bytes(n) with a
    # huge n would allocate n bytes.
    if args:
        raise UnsafeCheckpointError(
            f'refusing bytes() with arguments {args[:1]!r}... while loading '
            'a checkpoint')
    return b''


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
    # torch.__version__, a str subclass, as written into meta by scripts.
    TorchVersion,
    (_history_buffer_getattr, 'builtins.getattr'),
    (_history_buffer_getattr, '__builtin__.getattr'),
    (_pickled_empty_bytes, 'builtins.bytes'),
    (_pickled_empty_bytes, '__builtin__.bytes'),
]
_SAFE_NAMES = {
    item[1]
    if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}'
    for item in SAFE_GLOBALS
}
# torch allows bytearray by default, but bytearray(n) allocates and zero-fills
# n bytes, out of all proportion to the file; mmengine never writes it.
_MEMORY_BOMB_GLOBALS = {'builtins.bytearray', '__builtin__.bytearray'}

# torch.save's legacy (non-zip) format starts with the pickled magic number
# 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19'
_ZIP_MAGICS = (b'PK\x03\x04', b'PK\x05\x06')


def trust_all_checkpoints() -> None:
    """Opt in to full unpickling (``weights_only=False``) in this process.

    Only for files from a source you trust: unpickling can run code.
    """
    os.environ[TRUST_ENV] = '1'


def _human_size(nbytes: int) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if nbytes < 1024 or unit == 'GiB':
            return (f'{nbytes} {unit}'
                    if unit == 'B' else f'{nbytes:.1f} {unit}')
        nbytes /= 1024
    return ''  # unreachable


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _describe_foreign(head: bytes) -> str:
    """Why a file that is neither a zip nor a legacy torch file is not a
    checkpoint, in words a user can act on."""
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(
            c.isprintable() or c in '\r\n\t' for c in text.rstrip('\ufffd')):
        start = text.strip().splitlines()[0][:40]
        if text.startswith('version https://git-lfs'):
            return ('it is a Git LFS pointer, not the file: run '
                    '`git lfs pull` or download the file itself')
        if text.lstrip().lower().startswith(('<!doctype html', '<html')):
            return ('it is an HTML page (the download returned a web page): '
                    'download the file itself')
        return f'it is a text file starting with {start!r}'
    return f'it starts with bytes {head[:8]!r}'


def _check_file(filename: str) -> str:
    """Raise :class:`CheckpointFileError` unless ``filename`` looks like a
    torch checkpoint; return its format, ``'zip'`` or ``'legacy'``."""
    if osp.isdir(filename):
        raise CheckpointFileError(
            f'{filename} is a directory, not a checkpoint file: pass the '
            '.pth file itself')
    if not osp.isfile(filename):
        raise CheckpointNotFoundError(f'Checkpoint file not found: {filename}')
    try:
        with open(filename, 'rb') as f:
            head = f.read(64)
    except OSError as err:
        raise CheckpointFileError(
            f'cannot read checkpoint {filename}: {err.strerror or err}'
        ) from err
    if not head:
        raise empty_file_error(filename)
    if head.startswith(_ZIP_MAGICS):
        return 'zip'
    if head.startswith(_LEGACY_MAGIC):
        return 'legacy'
    if any(
            magic.startswith(head)
            for magic in _ZIP_MAGICS + (_LEGACY_MAGIC, )):
        raise damaged_file_error(filename, f'only {len(head)} bytes')
    raise CheckpointFileError(
        f'{filename} is not a PyTorch checkpoint: {_describe_foreign(head)}')


def empty_file_error(filename: str) -> CheckpointFileError:
    """The error for a checkpoint file of 0 bytes (any format)."""
    return CheckpointFileError(
        f'{filename} is empty (0 bytes), not a checkpoint: the download '
        'or copy was probably interrupted; fetch the file again')


def damaged_file_error(filename: str, err) -> CheckpointFileError:
    """The error for a checkpoint file cut short or corrupted (any
    format); ``err`` is the reader's exception or the reason in words."""
    if isinstance(err, zipfile.BadZipFile):
        reason = 'its zip archive is cut short or corrupted'
    elif isinstance(err, BaseException):
        reason = _first_line(err)
    else:
        reason = err
    return CheckpointFileError(
        f'{filename} is a truncated or damaged checkpoint ({reason}); fetch '
        'the file again')


def _pickle_globals(data: bytes) -> List[str]:
    """The ``module.name`` of every GLOBAL opcode, without unpickling."""
    names = []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == 'GLOBAL':
            names.append(arg.replace(' ', '.', 1))
        elif opcode.name == 'STOP':
            break
    return names


def _check_zip_records(filename: str) -> None:
    """Refuse what would let a small zip checkpoint take unbounded memory
    while it is read: compressed records and memory-allocating globals."""
    try:
        with zipfile.ZipFile(filename) as archive:
            infos = archive.infolist()
            pickles = [
                i for i in infos if i.filename.rsplit('/', 1)[-1] == 'data.pkl'
            ]
            if not pickles:
                raise CheckpointFileError(
                    f'{filename} is a zip archive but not a PyTorch '
                    'checkpoint (it has no data.pkl)')
            compressed = sorted(
                (i for i in infos if i.compress_type != zipfile.ZIP_STORED),
                key=lambda i: -i.file_size)
            if compressed:
                raise UnsafeCheckpointError(
                    f'{filename} holds compressed records, which torch.save '
                    'never writes and which can hide huge tensors (' +
                    ', '.join(f'{i.filename}: {_human_size(i.compress_size)}'
                              f' inflates to {_human_size(i.file_size)}'
                              for i in compressed[:3]) + '). ' + _TRUST_HINT)
            names = _pickle_globals(archive.read(pickles[0]))
    except UserError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        # zipfile's BadZipFile for a cut archive, pickletools' ValueError
        # for a damaged data.pkl...
        raise damaged_file_error(filename, err) from err
    bombs = sorted(set(names) & _MEMORY_BOMB_GLOBALS)
    if bombs:
        raise UnsafeCheckpointError(
            f'{filename} holds objects that can allocate unbounded memory '
            f'while loading ({", ".join(bombs)}). ' + _TRUST_HINT)


def _unsafe_names(filename: str) -> List[str]:
    try:
        return [
            name for name in
            torch.serialization.get_unsafe_globals_in_checkpoint(filename)
            if name not in _SAFE_NAMES
        ]
    except Exception:  # a legacy file: torch's own message says enough
        return []


def _weights_only_reason(err: BaseException) -> str:
    # torch wraps the reason in a paragraph of advice; keep the reason.
    text = str(err)
    if 'WeightsUnpickler error:' in text:
        reason = text.split('WeightsUnpickler error:', 1)[1].strip()
        if reason:
            return reason.splitlines()[0]
    return _first_line(err)


def load_local_checkpoint(filename: str,
                          map_location=None,
                          mmap: bool = False) -> dict:
    """mmengine's local-file loader, weights-only with mmengine's objects
    allowed; registered for every path without a URL scheme.

    Args:
        mmap (bool): Map the tensors' storage from the file instead of
            reading it (files in torch's zip format; others are read): a
            check of keys and shapes then reads only the file's index, not
            the weights a run loads again afterwards.
    """
    filename = osp.expanduser(filename)
    kind = _check_file(filename)
    trusted = os.environ.get(TRUST_ENV) == '1'
    if kind == 'zip' and not trusted:
        _check_zip_records(filename)
    mmap = mmap and kind == 'zip'
    try:
        if trusted:
            return torch.load(
                filename,
                map_location=map_location,
                weights_only=False,
                mmap=mmap)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(
                filename,
                map_location=map_location,
                weights_only=True,
                mmap=mmap)
    except UserError:
        raise
    except pickle.UnpicklingError as err:
        if trusted:
            raise damaged_file_error(filename, err) from err
        names = _unsafe_names(filename)
        raise UnsafeCheckpointError(
            f'{filename} holds objects that rap_sam does not load by '
            f'default ({", ".join(names) or _weights_only_reason(err)}). ' +
            _TRUST_HINT) from err
    except (ImportError, AttributeError) as err:
        # Only reachable when trusted: the file names a class that is not
        # installed here.
        raise CheckpointFileError(
            f'{filename} needs code that is not installed here '
            f'({_first_line(err)})') from err
    except MemoryError:
        raise
    except Exception as err:
        # torch reports a cut or corrupted file as whichever error its
        # reader hit first: miniz's RuntimeError, EOFError, struct.error,
        # numpy's ValueError for a short buffer...
        raise damaged_file_error(filename, err) from err


CheckpointLoader.register_scheme(
    prefixes='', loader=load_local_checkpoint, force=True)


def state_dict_from_checkpoint(
        checkpoint: dict,
        source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint, DDP prefixes removed."""
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'{source} holds a {type(state_dict).__name__}, not a state '
            'dict of weights')
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
    """Raise :class:`CheckpointMismatchError` naming how many keys are
    missing, unexpected and wrongly shaped, with the first few of each, on
    one line (another model's checkpoint misses hundreds)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f'{k}: checkpoint {tuple(v.shape)} vs model '
        f'{tuple(expected[k].shape)}' for k, v in state_dict.items() if
        k in expected and hasattr(v, 'shape') and v.shape != expected[k].shape
    ]
    shown = 3
    problems = []
    for title, keys in (('missing keys', missing),
                        ('unexpected keys', unexpected), ('shape mismatches',
                                                          wrong_shape)):
        if keys:
            more = f', and {len(keys) - shown} more' \
                if len(keys) > shown else ''
            problems.append(f'{len(keys)} {title} '
                            f'({", ".join(keys[:shown])}{more})')
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not fit {type(model).__name__}: ' +
            '; '.join(problems) + ': give the config the checkpoint was '
            'made with, or weights made for this config')


def _tensor_nbytes(tensor: torch.Tensor) -> int:
    # From the shape alone: nothing of a mapped file is read.
    return tensor.numel() * tensor.element_size()


def check_tensor_sizes(model: torch.nn.Module,
                       state_dict: dict,
                       source: str = 'checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` if a tensor is larger than the
    whole model, before anything reads or copies it."""
    total = sum(_tensor_nbytes(v) for v in model.state_dict().values())
    oversized = [(k, v) for k, v in state_dict.items()
                 if isinstance(v, torch.Tensor) and _tensor_nbytes(v) > total]
    if oversized:
        listed = ', '.join(
            f'{k} {tuple(v.shape)} = {_human_size(_tensor_nbytes(v))}'
            for k, v in oversized[:3])
        raise CheckpointMismatchError(
            f'{source} declares {len(oversized)} tensor(s) larger than the '
            f'whole {type(model).__name__} ({_human_size(total)}): {listed}; '
            'it is not a checkpoint of this model')


def _is_finite(tensor: torch.Tensor) -> bool:
    if tensor.numel() == 0:
        return True
    if tensor.is_floating_point():
        # NaN propagates through min and max and an infinity is one of them:
        # exact, one pass, no tensor-sized temporary (10x isfinite().all()).
        low, high = torch.aminmax(tensor)
        return bool(torch.isfinite(low) & torch.isfinite(high))
    return bool(torch.isfinite(tensor).all())


def check_finite(state_dict: dict, source: str = 'checkpoint') -> None:
    """Raise :class:`NonFiniteWeightsError` naming the tensors that hold NaN
    or infinite values (a diverged run), which would otherwise fail far from
    their cause."""
    bad = [
        k for k, v in state_dict.items() if isinstance(v, torch.Tensor) and (
            v.is_floating_point() or v.is_complex()) and not _is_finite(v)
    ]
    if bad:
        more = f' and {len(bad) - 5} more' if len(bad) > 5 else ''
        raise NonFiniteWeightsError(
            f'{source} holds NaN or infinite weights in {len(bad)} '
            f'tensor(s): {", ".join(bad[:5])}{more}; the run that wrote it '
            'probably diverged: use an earlier checkpoint')


def load_model_weights(model: torch.nn.Module,
                       filename: str,
                       map_location='cpu') -> dict:
    """Load ``filename`` into ``model`` strictly, with a clear error that
    lists every mismatch. Returns the whole checkpoint (e.g. its meta).

    Tensor sizes and shapes are compared with the model's before anything
    computes on them (a tensor can declare gigabytes through a zero stride
    at no cost until it is used), and NaN or infinite weights are refused
    before the model sees them.
    """
    # Not torch.load(mmap=True): its reader does not check a record's size
    # against the tensor's, so a damaged file would read past the record.
    # Without mmap a local file costs at most its own size in memory: the
    # loader refuses the compressed records that could inflate it.
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location)
    state_dict = state_dict_from_checkpoint(checkpoint, filename)
    check_tensor_sizes(model, state_dict, filename)
    check_state_dict(model, state_dict, filename)
    check_finite(state_dict, filename)
    model.load_state_dict(state_dict, strict=True)
    return checkpoint
