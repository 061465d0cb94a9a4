from torch import Tensor


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
