"""Where class-embedding files live and how they are read.

A class-embedding file holds a float tensor ``[num_classes, num_synonyms,
dim]`` of L2-normalised CLIP text embeddings (see ``tools/gen_cls.py``). The
reference implementation reads them from ``~/.cache/embd/{name}.pth``; users
already keep their files there, so that stays the default. The directory can
be moved with the ``RAP_SAM_EMBD_DIR`` environment variable or per model with
the head's ``ov_classifier_dir`` argument.
"""
import os
import os.path as osp
import pickle
from typing import Optional

import torch

from .user_errors import UserError

EMBD_DIR_ENV = 'RAP_SAM_EMBD_DIR'
DEFAULT_EMBD_DIR = '~/.cache/embd'


class ClassEmbeddingError(UserError, ValueError):
    """A class-embedding file is missing or does not fit the model."""


def class_embedding_dir(root: Optional[str] = None) -> str:
    """The directory holding class-embedding files."""
    root = root or os.environ.get(EMBD_DIR_ENV) or DEFAULT_EMBD_DIR
    return osp.expanduser(root)


def class_embedding_path(name: str, root: Optional[str] = None) -> str:
    """``{dir}/{name}.pth``, e.g.
    ``convnext_large_d_320_CocoPanopticOVDataset``."""
    return osp.join(class_embedding_dir(root), f'{name}.pth')


def _read(path: str):
    """``torch.load`` of a file that should hold one tensor; anything else
    (empty, text, truncated, other objects) is a ClassEmbeddingError."""
    remake = ('make it again with `python tools/gen_cls.py CONFIG`, or '
              'delete it if it caches a --classes vocabulary (it is then '
              'made again)')
    try:
        if osp.getsize(path) == 0:
            raise ClassEmbeddingError(f'{path} is empty: {remake}.')
        return torch.load(path, map_location='cpu', weights_only=True)
    except ClassEmbeddingError:
        raise
    except pickle.UnpicklingError as err:
        # torch's own text advises turning the safety check off: not here.
        raise ClassEmbeddingError(
            f'{path} holds objects other than a tensor (or is not a torch '
            f'file): {remake}.') from err
    except Exception as err:  # torch raises many kinds on a bad file
        reason = ' '.join(str(err).split())[:200]
        raise ClassEmbeddingError(
            f'{path} is not a class-embedding file torch can read '
            f'({type(err).__name__}: {reason}): {remake}.') from err


def load_class_embeddings(name: str,
                          root: Optional[str] = None,
                          num_classes: Optional[int] = None,
                          embed_dims: Optional[int] = None) -> torch.Tensor:
    """Read and check the embeddings ``[num_classes, num_synonyms, dim]``.

    Raises:
        ClassEmbeddingError: the file is missing, empty or unreadable, is not
            a 3-d floating-point tensor, has rows that are not unit-norm, or
            its class count / dimension differs from ``num_classes`` /
            ``embed_dims`` when given.
    """
    path = class_embedding_path(name, root)
    if not osp.isfile(path):
        # The toy configs' small classifiers come from the toy tool (gen_cls
        # would encode them with the 768-d CLIP tower they do not use).
        maker = ('`python tools/toy_train_eval.py` (it writes the toy '
                 "configs' files to ROOT/embd)" if name.startswith('toy_') else
                 '`python tools/gen_cls.py CONFIG` (it encodes the '
                 "dataset's class names with the CLIP text tower the config "
                 'names)')
        raise ClassEmbeddingError(
            f'Class-embedding file not found: {path}. Make it with {maker}, '
            f'or point {EMBD_DIR_ENV} at the directory that holds '
            f'{name}.pth.')
    embeddings = _read(path)
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
        shape = tuple(embeddings.shape) if isinstance(
            embeddings, torch.Tensor) else type(embeddings).__name__
        raise ClassEmbeddingError(
            f'{path} must hold a tensor [num_classes, num_synonyms, dim], '
            f'got {shape}.')
    if embeddings.numel() == 0:
        raise ClassEmbeddingError(
            f'{path} holds no embeddings (shape '
            f'{tuple(embeddings.shape)}): make it again with tools/gen_cls.py.'
        )
    if not embeddings.is_floating_point():
        raise ClassEmbeddingError(
            f'{path} holds {embeddings.dtype} values; class embeddings are '
            'floating-point (make them with tools/gen_cls.py).')
    embeddings = embeddings.float()
    if num_classes is not None and embeddings.size(0) != num_classes:
        raise ClassEmbeddingError(
            f'{path} has {embeddings.size(0)} classes but the model expects '
            f'{num_classes} (num_things_classes + num_stuff_classes): make '
            'it again for this config with `python tools/gen_cls.py CONFIG` '
            '(--split train for a training config).')
    if embed_dims is not None and embeddings.size(2) != embed_dims:
        raise ClassEmbeddingError(
            f'{path} has embeddings of dimension {embeddings.size(2)} but the '
            f'model expects {embed_dims}.')
    norms = embeddings.norm(dim=-1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise ClassEmbeddingError(
            f'{path}: every embedding must be L2-normalised (norms range '
            f'{norms.min().item():.4f}..{norms.max().item():.4f}).')
    return embeddings
