"""Deployment: the inference switch (:func:`prepare`), export and runtimes."""
from .prepare import MODES, PRECISIONS, DeployModeError, prepare
from .reference import ReferenceFusionHead, to_reference

__all__ = [
    'MODES', 'PRECISIONS', 'DeployModeError', 'prepare', 'ReferenceFusionHead',
    'to_reference'
]
