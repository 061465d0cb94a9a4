"""The open-vocabulary classifier: CLIP text embeddings of class names.

Every class is a comma-separated list of synonyms ('person,child,girl');
each synonym is put into every ViLD template, encoded by the CLIP text
tower, L2-normalised, averaged over the templates and normalised again.
Classes with fewer synonyms than the longest list are padded by repeating
their first synonym, giving ``[num_classes, max_synonyms, dim]``.
"""
import copy
import hashlib
import io
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch

from .class_embeddings import class_embedding_path
from .user_errors import UserError
from .vild_templates import VILD_TEMPLATES


class VocabularyError(UserError, ValueError):
    """A class list (names or a ``--classes`` file) cannot be used."""


def split_synonyms(class_name: str) -> List[str]:
    """'traffic_light/signal' -> ['traffic light', 'signal'].

    The same rules the RAP-SAM classifiers were made with: '_or_' and '/'
    separate synonyms, '_' is a space, everything is lower case.
    """
    name = class_name.replace('_or_', ',').replace('/', ',')
    name = name.replace('_', ' ').lower()
    synonyms = [s.strip() for s in name.split(',')]
    synonyms = [s for s in synonyms if s]
    if not synonyms:
        raise VocabularyError(
            f'The class name {class_name!r} holds no name, only separators '
            "(',', '/', '_or_'): give at least one word.")
    return synonyms


def encode_prompts(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)``, run on the shortest token prefix.

    OpenCLIP's text tower is causal and pools at the end-of-text token (the
    highest id), so the padding after the longest prompt never reaches a
    pooled feature: dropping it gives the same embeddings (up to float
    rounding) 3-4x faster on the ViLD prompts. Models of another make fall
    back to ``encode_text``.
    """
    parts = ('token_embedding', 'positional_embedding', 'transformer',
             'attn_mask', 'ln_final', 'text_projection')
    if (getattr(model, 'text_pool_type', None) != 'argmax'
            or not all(hasattr(model, p) for p in parts)
            or model.attn_mask is None  # not causal: padding matters
            or not getattr(model.transformer, 'batch_first', False)):
        return model.encode_text(tokens)
    n = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :n]
    dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(dtype)
    x = x + model.positional_embedding[:n].to(dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(x.size(0)), tokens.argmax(dim=-1)]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


@torch.no_grad()
def encode_class_names(model,
                       tokenizer,
                       class_names: Sequence[str],
                       templates: Sequence[str] = VILD_TEMPLATES,
                       batch_size: int = 256,
                       logger=None) -> torch.Tensor:
    """Embeddings ``[num_classes, max_synonyms, dim]``, float32, unit-norm.

    Args:
        model: an OpenCLIP model (or anything with ``encode_text``).
        tokenizer: callable turning a list of strings into tokens.
        class_names: one entry per class, synonyms comma-separated.
    """
    synonyms = [split_synonyms(name) for name in class_names]
    prompts = [
        t.format(s) for syns in synonyms for s in syns for t in templates
    ]
    feats = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start:start + batch_size])
        feats.append(encode_prompts(model, tokens).float().cpu())
        if logger is not None:
            logger.info(f'encoded {start + len(tokens)}/{len(prompts)}')
    feats = torch.cat(feats).view(-1, len(templates), feats[0].size(-1))
    feats = feats / feats.norm(dim=-1, keepdim=True)
    feats = feats.mean(dim=1)
    feats = feats / feats.norm(dim=-1, keepdim=True)

    max_syns = max(len(s) for s in synonyms)
    classifier, start = [], 0
    for syns in synonyms:
        cls_feats = feats[start:start + len(syns)]
        pad = cls_feats[:1].expand(max_syns - len(syns), -1)
        classifier.append(torch.cat([cls_feats, pad]))
        start += len(syns)
    return torch.stack(classifier).contiguous()


def read_class_file(path: str) -> List[str]:
    """A user vocabulary: one class a line, synonyms comma-separated; blank
    lines and lines starting with ``#`` are skipped. The file is UTF-8 text
    (a byte-order mark is allowed).

    Raises:
        VocabularyError: the file cannot be read, is binary or not UTF-8,
            lists no class or a class twice, or a line holds no name.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise VocabularyError(f'Cannot read the class file {path}: '
                              f'{err.strerror or err}.') from err
    if b'\0' in data:
        raise VocabularyError(
            f'The class file {path} is binary, not text: give a text file '
            'with one class a line.')
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b'\n') + 1
        raise VocabularyError(
            f'The class file {path} is not UTF-8 text (byte '
            f'0x{data[err.start]:02x} on line {line}): save it as UTF-8.'
        ) from err
    names, lines = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith('#'):
            continue
        try:
            split_synonyms(name)
        except VocabularyError as err:
            raise VocabularyError(f'{path}, line {number}: {err}') from err
        if name in lines:
            # Two equal classifiers tie, so the later is never predicted.
            raise VocabularyError(
                f'{path}, line {number}: the class {name!r} is already on '
                f'line {lines[name]}: list each class once (synonyms '
                'comma-separated on its line).')
        lines[name] = number
        names.append(name)
    if not names:
        raise VocabularyError(
            f'The class file {path} lists no class (only blank lines or '
            "'#' comments): give one class a line, synonyms "
            'comma-separated.')
    return names


def check_num_things(num_things: Optional[int], classes: Sequence[str],
                     class_file: str) -> None:
    """The tools' ``--num-things`` against the ``classes`` read from
    ``class_file``: said with the option's name before a model is built.

    Raises:
        VocabularyError: ``num_things`` outside 0 to ``len(classes)``.
    """
    if num_things is not None and not 0 <= num_things <= len(classes):
        raise VocabularyError(
            f'--num-things must be from 0 to the {len(classes)} classes of '
            f'{class_file}, got {num_things}.')


def vocabulary_name(class_names: Sequence[str], model_name: str,
                    weights: Optional[str]) -> str:
    """A class-embedding name fixed by the content it encodes.

    ``weights`` names the CLIP weights (pretrained tag or checkpoint file):
    the same vocabulary under other weights is another file.
    """
    key = json.dumps(
        dict(
            model=model_name,
            weights=weights,
            templates=list(VILD_TEMPLATES),
            classes=list(class_names)),
        sort_keys=True)
    digest = hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]
    return f'{model_name}_vocab_{digest}'


def vocabulary_embedding_path(class_names: Sequence[str],
                              model_name: str,
                              weights: Optional[str],
                              root: Optional[str] = None) -> str:
    return class_embedding_path(
        vocabulary_name(class_names, model_name, weights), root)


def save_class_embeddings(embeddings: torch.Tensor, path: str) -> None:
    """Write ``path`` through a temporary file
    (:func:`rap_sam.utils.output_files.write_bytes`): readers never see
    half a file, a failed write leaves nothing, and a path a tool cleared
    without ``--overwrite`` is not replaced if another run wrote it
    meanwhile."""
    from .output_files import write_bytes
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    # Through memory: torch.save names the archive's records after the file
    # it writes, and the same embeddings should give the same bytes.
    buf = io.BytesIO()
    torch.save(embeddings.float().contiguous(), buf)
    write_bytes(path, buf.getvalue())


def vocabulary_embeddings(class_names: Sequence[str],
                          model_name: str,
                          pretrained: Optional[str] = None,
                          checkpoint: Optional[str] = None,
                          model_cfg: Optional[dict] = None,
                          root: Optional[str] = None) -> Tuple[str, str]:
    """The embedding file of a user vocabulary, made on first use.

    Returns ``(name, path)``; ``name`` is what a head's classifier name
    takes. The weights are resolved offline (see ``resolve_clip_checkpoint``).
    """
    from .openclip_loader import (build_clip_model, build_clip_tokenizer,
                                  resolve_clip_checkpoint)
    weights = pretrained if checkpoint is None else osp.abspath(checkpoint)
    name = vocabulary_name(class_names, model_name, weights)
    path = class_embedding_path(name, root)
    if not osp.isfile(path):
        ckpt = resolve_clip_checkpoint(model_name, pretrained, checkpoint)
        model = build_clip_model(
            model_name, model_cfg, ckpt, pretrained=pretrained)
        tokenizer = build_clip_tokenizer(model_name, model_cfg)
        save_class_embeddings(
            encode_class_names(model, tokenizer, class_names), path)
    return name, path


def _lazy_dataset_cfg(cfg):
    """A copy that builds without reading annotations or transforms."""
    if isinstance(cfg, (list, tuple)):
        return [_lazy_dataset_cfg(c) for c in cfg]
    cfg = copy.deepcopy(cfg)
    cfg['lazy_init'] = True
    if 'pipeline' in cfg:
        cfg['pipeline'] = []
    for key in ('dataset', 'datasets'):
        if key in cfg:
            cfg[key] = _lazy_dataset_cfg(cfg[key])
    return cfg


def _static_vocabulary(dataset_cfg, registry):
    """Name and classes read off the dataset class, for configs that
    cannot be built here (e.g. without their data paths)."""
    cfg = dataset_cfg
    while 'dataset' in cfg:  # RepeatDataset and its kind
        cfg = cfg['dataset']
    cls = cfg['type'] if isinstance(cfg['type'], type) else registry.get(
        cfg['type'])
    classes = (cfg.get('metainfo') or {}).get('classes') or getattr(
        cls, 'METAINFO', {}).get('classes')
    name = getattr(cls, 'dataset_name', None)
    return (name if isinstance(name, str) else cls.__name__), classes


def dataset_vocabulary(dataset_cfg) -> Tuple[str, List[str]]:
    """``(dataset_name, classes)`` of a dataset config, reading no data.

    The dataset is built with ``lazy_init=True`` and no pipeline, so its own
    logic (class lists per version, metainfo overrides, joint class spaces)
    decides. The name is its ``dataset_name`` attribute when it has one
    (e.g. 'YouTubeVISDataset_2019'), else its class name, as in the file
    names of the released class embeddings. A config that does not build
    (and is no concatenation) is read off its class's METAINFO instead.
    """
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope

    # Wrappers from mmengine build their inner datasets in the default scope.
    scope = None if DefaultScope.get_current_instance() else 'mmdet'
    with DefaultScope.overwrite_default_scope(scope):
        try:
            dataset = DATASETS.build(_lazy_dataset_cfg(dataset_cfg))
        except Exception:
            if 'datasets' in dataset_cfg:
                raise
            name, classes = _static_vocabulary(dataset_cfg, DATASETS)
        else:
            while not hasattr(dataset, 'dataset_name') and hasattr(
                    dataset, 'dataset'):
                dataset = dataset.dataset  # RepeatDataset and its kind
            classes = dataset.metainfo.get('classes')
            name = getattr(dataset, 'dataset_name',
                           None) or type(dataset).__name__
    if not classes:
        raise ValueError(f'{name} has no classes in its metainfo: nothing '
                         f'to encode.')
    return name, list(classes)
