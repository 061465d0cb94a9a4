"""Reading a user's config file, with a message when it cannot be read."""
import os
import os.path as osp
from typing import Union

from mmengine.config import Config

from .user_errors import UserError


class ConfigFileError(UserError, FileNotFoundError):
    """The config file is missing or cannot be read."""


def read_config(path: Union[str, os.PathLike]) -> Config:
    """``Config.fromfile(path)``; a missing or broken file raises
    :class:`ConfigFileError` with a one-line message."""
    path = os.fspath(path)
    if not osp.isfile(path):
        raise ConfigFileError(f'Config file not found: {path}')
    try:
        return Config.fromfile(path)
    except Exception as err:  # whatever the user's Python file raises
        first_line = (str(err).strip().splitlines() or [''])[0]
        raise ConfigFileError(f'Cannot read the config {path}: '
                              f'{type(err).__name__}: {first_line}') from err
