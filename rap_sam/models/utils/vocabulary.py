from typing import List, Optional, Sequence, Tuple

from torch import Tensor

from rap_sam.utils.user_errors import UserError


class VocabularyError(UserError, ValueError):
    """A class list that cannot be a vocabulary."""


def use_vocabulary(
        model,
        classes: Sequence[str],
        num_things: Optional[int] = None,
        clip_checkpoint: Optional[str] = None) -> Tuple[List[str], int]:
    """Make ``model`` classify into ``classes``: their CLIP text embeddings
    (OpenCLIP ``convnext_large_d_320``, made once and cached by content,
    see ``tools/gen_cls.py``) replace its classifier's.

    Args:
        model: A ``RapSAM`` (or subclass) instance.
        classes: Class names, each optionally with synonyms (``'cup,mug'``);
            blank ones are dropped.
        num_things (int, optional): The first ``num_things`` classes are
            things, the rest stuff; all are things by default.
        clip_checkpoint (str, optional): A local OpenCLIP checkpoint.

    Returns:
        tuple: The classes' display names and the number of things.
    """
    from rap_sam.datasets import display_names
    from rap_sam.utils.class_embeddings import load_class_embeddings
    from rap_sam.utils.openclip_loader import (DEFAULT_CLIP_MODEL,
                                               DEFAULT_CLIP_PRETRAINED)
    from rap_sam.utils.text_classifier import vocabulary_embeddings
    classes = [c.strip() for c in classes if c.strip()]
    if not classes:
        raise VocabularyError('The vocabulary is empty: give at least one '
                              'class name.')
    if num_things is None:
        num_things = len(classes)
    if not 0 <= num_things <= len(classes):
        raise VocabularyError(
            f'num_things must be between 0 and the number of classes '
            f'({len(classes)}), got {num_things}.')
    name, _ = vocabulary_embeddings(
        classes,
        DEFAULT_CLIP_MODEL,
        DEFAULT_CLIP_PRETRAINED,
        checkpoint=clip_checkpoint)
    embeddings = load_class_embeddings(
        name, embed_dims=model.panoptic_head.classifier.embed_dims)
    set_vocabulary(model, embeddings, num_things)
    return display_names(classes), num_things


def set_vocabulary(model, embeddings: Tensor, num_things: int) -> None:
    """Make a RAP-SAM model classify into another vocabulary.

    Args:
        model: A ``RapSAM`` (or subclass) instance.
        embeddings (Tensor): ``[K, P, D]`` unit-norm CLIP text embeddings of
            K classes with P synonyms each (``tools/gen_cls.py``,
            :func:`rap_sam.utils.text_classifier.vocabulary_embeddings`).
        num_things (int): The first ``num_things`` classes are things
            (instances); the rest are stuff.
    """
    num_classes = embeddings.size(0)
    if not 0 <= num_things <= num_classes:
        raise ValueError(f'num_things must be in [0, {num_classes}], got '
                         f'{num_things}')
    head = model.panoptic_head
    head.classifier.set_embeddings(embeddings)
    for module in (model, head, model.panoptic_fusion_head):
        module.num_things_classes = num_things
        module.num_stuff_classes = num_classes - num_things
        module.num_classes = num_classes
