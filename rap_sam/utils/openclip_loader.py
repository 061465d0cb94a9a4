"""Import OpenCLIP, build its models and find their weights offline.

OpenCLIP (and timm, which builds its ConvNeXt towers) import torchvision.
The torchvision wheels on PyPI are CUDA builds: beside a CPU-only torch their
C++ ops library cannot load, and torchvision's import then dies on its own
``register_fake('torchvision::nms')`` ("operator torchvision::nms does not
exist"). OpenCLIP and timm only need torchvision's Python parts, so
:func:`ensure_torchvision_importable` declares the missing operator schemas
(no kernels: calling such an op still fails with torchvision's own "Couldn't
load custom C++ ops" error) and imports it again. Where torchvision's ops load
(a matching build, e.g. on a GPU machine), nothing is changed.

Weights are never downloaded here: a pretrained tag is looked up in local
files only (see :func:`resolve_clip_checkpoint`). A checkpoint is read with
the checks of :mod:`rap_sam.utils.checkpoint` (weights only; a truncated or
damaged file is one line naming it) and compared with the model before
loading, so that the weights of another model are one line too, not
torch's list of every key.
"""
import copy
import glob
import importlib
import importlib.util
import os
import os.path as osp
import re
import sys
from typing import Optional

import torch

from .user_errors import UserError

DEFAULT_CLIP_MODEL = 'convnext_large_d_320'
DEFAULT_CLIP_PRETRAINED = 'laion2b_s29b_b131k_ft_soup'
CLIP_DIR_ENV = 'RAP_SAM_CLIP_DIR'
DEFAULT_CLIP_DIR = '~/.cache/clip'
# File names the OpenCLIP weights have on the Hugging Face hub.
CHECKPOINT_NAMES = ('open_clip_pytorch_model.bin',
                    'open_clip_model.safetensors',
                    'open_clip_pytorch_model.safetensors')

_missing_op = re.compile(r'operator torchvision::(\w+) does not exist')
_schema_libs = []  # the definitions live as long as their Library object


class ClipWeightsNotFoundError(UserError, FileNotFoundError):
    """No local file holds the OpenCLIP weights asked for."""


class ClipCheckpointError(UserError, ValueError):
    """A local file is not a readable checkpoint of the OpenCLIP model."""


def _declare_torchvision_op(name: str) -> None:
    lib = torch.library.Library('torchvision', 'FRAGMENT')
    # Only the name matters: torchvision registers a fake kernel for it.
    lib.define(f'{name}(Tensor dets, Tensor scores, float iou_threshold) '
               '-> Tensor')
    _schema_libs.append(lib)


def declare_missing_torchvision_ops() -> None:
    """Make a later ``import torchvision`` (by anyone) survive, cheaply.

    Meant for package import time: it does not import torchvision. When
    torchvision's C++ library does not load here, the ops its import
    registers unconditionally (``nms``, ``qnms``) are declared.
    """
    if 'torchvision' in sys.modules or _schema_libs:
        return
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return
    for path in glob.glob(
            osp.join(spec.submodule_search_locations[0], '_C*.so')):
        try:
            torch.ops.load_library(path)  # torchvision loads it again: a no-op
            return
        except OSError:
            pass
    for name in ('nms', 'qnms'):
        if not hasattr(torch.ops.torchvision, name):
            _declare_torchvision_op(name)


def ensure_torchvision_importable() -> None:
    """Import torchvision, declaring ops its failed C++ library left out."""
    declare_missing_torchvision_ops()
    for _ in range(8):
        try:
            importlib.import_module('torchvision')
            return
        except ModuleNotFoundError:
            return  # OpenCLIP's own import reports what is missing
        except RuntimeError as e:
            match = _missing_op.search(str(e))
            if match is None:
                raise
            for name in [
                    m for m in sys.modules if m.split('.')[0] == 'torchvision'
            ]:
                del sys.modules[name]
            _declare_torchvision_op(match.group(1))
    raise RuntimeError('torchvision cannot be imported beside this torch.')


def import_open_clip():
    """The ``open_clip`` module, with a clear message when it is missing."""
    ensure_torchvision_importable()
    try:
        return importlib.import_module('open_clip')
    except ImportError as e:
        raise ImportError(
            f'OpenCLIP is needed for the CLIP backbone and class embeddings '
            f'({e}). Install it as requirements.txt lists it: pip install '
            f'--no-deps open_clip_torch timm torchvision ftfy wcwidth regex '
            f'safetensors') from e


def clip_model_config(model_name: str, model_cfg: Optional[dict] = None):
    """OpenCLIP's architecture dict for ``model_name`` (or ``model_cfg``)."""
    if model_cfg is not None:
        return copy.deepcopy(dict(model_cfg))
    open_clip = import_open_clip()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        known = [m for m in open_clip.list_models() if 'convnext' in m]
        raise ValueError(f'OpenCLIP has no model named {model_name!r}; its '
                         f'ConvNeXt models are {known}. Pass model_cfg for '
                         f'a custom architecture.')
    return cfg


def build_clip_model(model_name: str = DEFAULT_CLIP_MODEL,
                     model_cfg: Optional[dict] = None,
                     checkpoint: Optional[str] = None,
                     pretrained: Optional[str] = None):
    """An OpenCLIP model in eval mode without gradients.

    Args:
        model_name: an OpenCLIP architecture, e.g. ``convnext_large_d_320``.
        model_cfg: an OpenCLIP architecture dict (``embed_dim``,
            ``vision_cfg``, ``text_cfg``) used instead of the named one.
        checkpoint: a local OpenCLIP checkpoint; random weights when None.
        pretrained: the tag ``checkpoint`` was resolved from; only names
            the file to fetch when ``checkpoint`` holds other weights.

    Raises:
        ClipCheckpointError: ``checkpoint`` is empty, truncated, damaged,
            not a torch file, or holds the weights of another model.
    """
    open_clip = import_open_clip()
    cfg = clip_model_config(model_name, model_cfg)
    # The file first: it is checked in seconds, a large model takes longer
    # to build.
    state = None if checkpoint is None else read_clip_state_dict(
        checkpoint, model_name, pretrained)
    if 'timm_model_name' in cfg.get('vision_cfg', {}):
        cfg['vision_cfg']['timm_model_pretrained'] = False  # no downloads
    text_cfg = cfg.get('text_cfg', {})
    custom_text = cfg.pop('custom_text', False) or 'hf_model_name' in text_cfg
    model_cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = model_cls(**cfg)
    if state is not None:
        load_clip_state_dict(model, state, checkpoint, model_name, pretrained)
    return model.eval().requires_grad_(False)


def _read_safetensors(path: str) -> dict:
    from .checkpoint import damaged_file_error, empty_file_error
    if osp.getsize(path) == 0:
        raise empty_file_error(path)
    from safetensors.torch import load_file
    try:
        return load_file(path, device='cpu')
    except MemoryError:
        raise
    except Exception as err:  # safetensors' own error for a cut header
        reason = ' '.join(str(err).split())[:200] or type(err).__name__
        raise damaged_file_error(path, reason) from err


def read_clip_state_dict(path: str,
                         model_name: Optional[str] = None,
                         pretrained: Optional[str] = None) -> dict:
    """The weights in a local OpenCLIP checkpoint (``.bin``/``.pth`` or
    ``.safetensors``), unwrapped as OpenCLIP's ``load_state_dict`` does.
    ``model_name``/``pretrained`` only name the expected file in errors.

    Raises:
        ClipCheckpointError: the file is missing, empty, truncated, damaged
            or not a torch file (the words of
            :class:`~rap_sam.utils.checkpoint.CheckpointFileError`, and which
            file was expected), or it holds no dict of tensors.
        UnsafeCheckpointError: it holds objects a weights-only load refuses.
    """
    from .checkpoint import CheckpointFileError, load_local_checkpoint
    try:
        if str(path).endswith('.safetensors'):
            state = _read_safetensors(path)
        else:
            state = load_local_checkpoint(path, map_location='cpu')
    except CheckpointFileError as err:
        raise ClipCheckpointError(
            f'{err} (expected: {expected_clip_file(model_name, pretrained)})'
        ) from err
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not state:
        what = ('no weights'
                if isinstance(state, dict) else f'a {type(state).__name__}')
        raise ClipCheckpointError(
            f'{path} holds {what}, not the weights of an OpenCLIP model: '
            f'pass {expected_clip_file(model_name, pretrained)}')
    if all(str(k).startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def expected_clip_file(model_name: Optional[str],
                       pretrained: Optional[str] = None) -> str:
    """Words naming the checkpoint file of ``model_name``/``pretrained``."""
    if model_name is None:
        return 'an OpenCLIP checkpoint'
    if pretrained and not osp.isfile(pretrained):
        hub_id = _hf_hub_id(model_name, pretrained)
        where = f' from https://huggingface.co/{hub_id}' if hub_id else ''
        return (f'the {CHECKPOINT_NAMES[0]} of OpenCLIP {model_name!r} '
                f'{pretrained!r}{where}')
    return f'a checkpoint of OpenCLIP {model_name!r}'


def _fit_to_model(model, state: dict) -> dict:
    """OpenCLIP's own adjustments before loading (``load_checkpoint``):
    older layouts, a scalar ``logit_scale``, resized position
    embeddings."""
    open_clip = import_open_clip()
    state = open_clip.convert.convert_state_dict(model, dict(state))
    if 'positional_embedding' in state and not hasattr(model,
                                                       'positional_embedding'):
        state = open_clip.model.convert_to_custom_text_state_dict(state)
    for key in ('logit_scale', 'logit_bias'):
        own = getattr(model, key, None)
        if own is not None and isinstance(state.get(key), torch.Tensor) \
                and state[key].ndim != own.ndim:
            state[key] = state[key].reshape(own.shape)
    if getattr(model, 'logit_bias', None) is not None \
            and 'logit_bias' not in state and 'logit_scale' in state:
        state['logit_bias'] = torch.zeros_like(state['logit_scale'])
    state.pop('text.transformer.embeddings.position_ids', None)
    for resize in (open_clip.model.resize_pos_embed,
                   open_clip.model.resize_text_pos_embed):
        try:
            resize(state, model)
        except (AssertionError, RuntimeError, ValueError):
            pass  # another model's embeddings: the shape check names them
    return state


def load_clip_state_dict(model,
                         state: dict,
                         path: str,
                         model_name: str,
                         pretrained: Optional[str] = None) -> None:
    """Load ``state`` (read from ``path``) into ``model``, strictly.

    Raises:
        ClipCheckpointError: a weight is missing, unexpected or shaped
            otherwise; the message counts them and names the first.
    """
    expected = model.state_dict()
    not_ours = f'{path} is not an OpenCLIP {model_name!r} checkpoint'
    fetch = f'pass {expected_clip_file(model_name, pretrained)}'
    try:
        state = _fit_to_model(model, state)
    except Exception as err:  # another model's position embeddings...
        raise ClipCheckpointError(
            f'{not_ours} ({type(err).__name__} while adapting it: '
            f'{" ".join(str(err).split())[:120]}): {fetch}') from err
    missing = [k for k in expected if k not in state]
    wrong = []
    for key, value in state.items():
        if key not in expected:
            continue
        there = (
            tuple(value.shape) if isinstance(value, torch.Tensor) else
            f'a {type(value).__name__}')
        if there != tuple(expected[key].shape):
            wrong.append((key, there, tuple(expected[key].shape)))
    unexpected = [k for k in state if k not in expected]
    total = len(expected)
    if missing:
        reason = (f'{len(missing)} of {total} keys missing, e.g. '
                  f'{missing[0]}')
    elif wrong:
        key, there, here = wrong[0]
        reason = (f'{len(wrong)} of {total} weights shaped otherwise, e.g. '
                  f'{key} {there} there, {here} here')
    elif unexpected:
        reason = (f'{len(unexpected)} of its {len(state)} keys are not '
                  f'the model\'s, e.g. {unexpected[0]}')
    else:
        model.load_state_dict(state, strict=True)
        return
    raise ClipCheckpointError(f'{not_ours} ({reason}): {fetch}')


def build_clip_tokenizer(model_name: str = DEFAULT_CLIP_MODEL,
                         model_cfg: Optional[dict] = None):
    open_clip = import_open_clip()
    if model_cfg is None:
        return open_clip.get_tokenizer(model_name)
    context_length = model_cfg.get('text_cfg', {}).get('context_length', 77)
    return open_clip.SimpleTokenizer(context_length=context_length)


def clip_dir(root: Optional[str] = None) -> str:
    return osp.expanduser(
        root or os.environ.get(CLIP_DIR_ENV) or DEFAULT_CLIP_DIR)


def default_clip_checkpoint(model_name: str,
                            pretrained: str,
                            root: Optional[str] = None) -> str:
    """Where a downloaded checkpoint is looked for first."""
    return osp.join(
        clip_dir(root), model_name, pretrained, CHECKPOINT_NAMES[0])


def _hf_hub_id(model_name: str, pretrained: str) -> Optional[str]:
    try:
        cfg = import_open_clip().get_pretrained_cfg(model_name, pretrained)
    except ImportError:
        return None
    return (cfg or {}).get('hf_hub', '').strip('/') or None


def _hf_cache_files(hub_id: str):
    """Files of ``hub_id`` in a Hugging Face cache copied to this machine."""
    hub_dir = os.environ.get('HF_HUB_CACHE') or osp.join(
        os.environ.get('HF_HOME', '~/.cache/huggingface'), 'hub')
    repo = 'models--' + hub_id.replace('/', '--')
    # Hub ids are matched case-insensitively, so are the cached folders.
    for folder in glob.glob(osp.join(osp.expanduser(hub_dir), 'models--*')):
        if osp.basename(folder).lower() == repo.lower():
            for name in CHECKPOINT_NAMES:
                yield from sorted(
                    glob.glob(osp.join(folder, 'snapshots', '*', name)))


def resolve_clip_checkpoint(model_name: str,
                            pretrained: Optional[str] = None,
                            checkpoint: Optional[str] = None,
                            root: Optional[str] = None) -> Optional[str]:
    """The local file with the weights of ``model_name``/``pretrained``.

    ``checkpoint`` (a path) wins; a ``pretrained`` that is a file path is
    used as one; a tag is looked for under ``{clip_dir}/{model}/{tag}/`` and
    in a Hugging Face hub cache. No weights asked for (both None): None.

    Raises:
        ClipWeightsNotFoundError: with the file to fetch and where to put it.
    """
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise ClipWeightsNotFoundError(
                f'OpenCLIP checkpoint not found: {checkpoint}')
        return checkpoint
    if pretrained is None:
        return None
    if osp.isfile(pretrained):
        return pretrained
    folder = osp.dirname(default_clip_checkpoint(model_name, pretrained, root))
    candidates = [osp.join(folder, name) for name in CHECKPOINT_NAMES]
    hub_id = _hf_hub_id(model_name, pretrained)
    if hub_id:
        candidates += list(_hf_cache_files(hub_id))
    for path in candidates:
        if osp.isfile(path):
            return path
    source = (f'https://huggingface.co/{hub_id} (file {CHECKPOINT_NAMES[0]})'
              if hub_id else 'the OpenCLIP release that offers this tag')
    raise ClipWeightsNotFoundError(
        f'No weights for OpenCLIP {model_name!r} with pretrained tag '
        f'{pretrained!r} on this machine (rap_sam never downloads them). '
        f'Download them from {source}, then either put the file at '
        f'{candidates[0]} (or set {CLIP_DIR_ENV} to the folder that holds '
        f'{model_name}/{pretrained}/) or pass its path with --checkpoint '
        "PATH (in a config: the backbone's init_cfg checkpoint=PATH).")
