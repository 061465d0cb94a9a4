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
files only (see :func:`resolve_clip_checkpoint`).
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
                     checkpoint: Optional[str] = None):
    """An OpenCLIP model in eval mode without gradients.

    Args:
        model_name: an OpenCLIP architecture, e.g. ``convnext_large_d_320``.
        model_cfg: an OpenCLIP architecture dict (``embed_dim``,
            ``vision_cfg``, ``text_cfg``) used instead of the named one.
        checkpoint: a local OpenCLIP checkpoint; random weights when None.
    """
    open_clip = import_open_clip()
    cfg = clip_model_config(model_name, model_cfg)
    if 'timm_model_name' in cfg.get('vision_cfg', {}):
        cfg['vision_cfg']['timm_model_pretrained'] = False  # no downloads
    text_cfg = cfg.get('text_cfg', {})
    custom_text = cfg.pop('custom_text', False) or 'hf_model_name' in text_cfg
    model_cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = model_cls(**cfg)
    if checkpoint is not None:
        open_clip.load_checkpoint(model, checkpoint)
    return model.eval().requires_grad_(False)


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
        f'{pretrained!r} on this machine, and none can be downloaded here. '
        f'Fetch them on a machine with internet from {source}, then either '
        f'put the file at {candidates[0]} (or set {CLIP_DIR_ENV} to the '
        f'folder that holds {model_name}/{pretrained}/) or pass its path '
        f'with --checkpoint PATH (the backbone: checkpoint=PATH).')
