"""RAP-SAM on MMDetection 3.x.

Importing the package registers its modules in mmdet's registries and the
checkpoint loader that reads mmengine checkpoints under torch >= 2.6.
"""
from . import models  # noqa: F401
from . import utils  # noqa: F401

__version__ = '0.1.0'
