"""The ViLD prompt templates used to build the open-vocabulary classifier.

The list (order and punctuation included) is the one the RAP-SAM checkpoints
were trained with (ViLD's templates as FC-CLIP uses them); changing a single
character changes every class embedding, so keep it as it is.
"""
VILD_TEMPLATES = (
    'a photo of a {}.',
    'This is a photo of a {}',
    'There is a {} in the scene',
    'There is the {} in the scene',
    'a photo of a {} in the scene',
    'a photo of a small {}.',
    'a photo of a medium {}.',
    'a photo of a large {}.',
    'This is a photo of a small {}.',
    'This is a photo of a medium {}.',
    'This is a photo of a large {}.',
    'There is a small {} in the scene.',
    'There is a medium {} in the scene.',
    'There is a large {} in the scene.',
)
