from .user_errors import UserError, cli_errors

try:
    import torch  # noqa: F401
except ImportError:  # a torch-free deployment uses user_errors only
    torch = None

if torch is not None:
    from .checkpoint import load_model_weights
    from .class_embeddings import (ClassEmbeddingError, class_embedding_dir,
                                   class_embedding_path, load_class_embeddings)

__all__ = [
    'ClassEmbeddingError', 'class_embedding_dir', 'class_embedding_path',
    'load_class_embeddings', 'load_model_weights', 'UserError', 'cli_errors'
]
