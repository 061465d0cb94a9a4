"""Reading a user's config file, with a message when it cannot be read."""
import os
import os.path as osp
from typing import Optional, Tuple, Union

from mmengine.config import Config

from .user_errors import UserError


class ConfigFileError(UserError, FileNotFoundError):
    """The config file is missing or cannot be read."""


def read_config(path: Union[str, os.PathLike]) -> Config:
    """``Config.fromfile(path)``; a missing or broken file raises
    :class:`ConfigFileError` with a one-line message."""
    path = os.fspath(path)
    if osp.isdir(path):
        raise ConfigFileError(f'{path} is a folder, not a config file: give '
                              'a .py config, e.g. '
                              'configs/rap_sam/eval_rap_sam_coco.py.')
    if not osp.isfile(path):
        raise ConfigFileError(f'Config file not found: {path}')
    try:
        return Config.fromfile(path)
    except Exception as err:  # whatever the user's Python file raises
        first_line = (str(err).strip().splitlines() or [''])[0]
        raise ConfigFileError(f'Cannot read the config {path}: '
                              f'{type(err).__name__}: {first_line}') from err


def _resize_scale(steps) -> Optional[tuple]:
    for step in steps or []:
        kind = step.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name.split('.')[-1] == 'Resize':
            return tuple(step['scale'])
        # Video pipelines nest the per-frame steps (TransformBroadcaster).
        found = _resize_scale(step.get('transforms'))
        if found:
            return found
    return None


def config_test_scale(cfg: Config, default: Tuple[int, int] = (1333, 800)):
    """The ``Resize`` scale ``(w, h)`` of the config's test pipeline."""
    pipeline = ((cfg.get('test_dataloader') or {}).get('dataset')
                or {}).get('pipeline', [])
    return _resize_scale(pipeline) or default
