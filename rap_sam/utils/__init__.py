from .checkpoint import load_model_weights
from .class_embeddings import (ClassEmbeddingError, class_embedding_dir,
                               class_embedding_path, load_class_embeddings)
from .user_errors import UserError, cli_errors

__all__ = [
    'ClassEmbeddingError', 'class_embedding_dir', 'class_embedding_path',
    'load_class_embeddings', 'load_model_weights', 'UserError', 'cli_errors'
]
