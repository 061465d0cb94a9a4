"""Deployment: the inference switch (:func:`prepare`), export and runtimes.

Without torch (a deployment that runs exported graphs) only the torch-free
modules (``backends``, ``deploy_spec``) can be imported, and this package's
torch side is not loaded.
"""
try:
    import torch  # noqa: F401
except ImportError:
    torch = None

__all__ = []
if torch is not None:
    from .prepare import (MODES, POSTS, PRECISIONS, DeployModeError, prepare,
                          use_post)
    from .reference import ReferenceFusionHead, to_reference

    __all__ += [
        'MODES', 'POSTS', 'PRECISIONS', 'DeployModeError', 'prepare',
        'use_post', 'ReferenceFusionHead', 'to_reference'
    ]
