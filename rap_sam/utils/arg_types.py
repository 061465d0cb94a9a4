"""argparse types the command-line tools share.

Only the standard library is imported here, as in interrupt_guard.py: a
tool parses its arguments before it imports torch and mmdet (seconds), so
it runs this file by its path rather than importing it, which would first
run the ``rap_sam`` package's ``__init__``::

    ARG_TYPES = runpy.run_path(osp.join(REPO, 'rap_sam/utils/arg_types.py'))
    positive_int = ARG_TYPES['positive_int']

Code that has imported ``rap_sam`` anyway takes them from
:mod:`rap_sam.utils.runner_cli`, which re-exports this module's.
"""
import argparse


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(
            f'expected a whole number >= {minimum}, got {text!r}')
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _whole_number(text, 0)
