"""Errors a user can fix, and how the command-line tools report them.

Every problem with what a user hands the project (a file, an image, a
prompt, a checkpoint, a config, a class list) raises a subclass of
:class:`UserError` whose message names the problem and what to do. The API
lets it propagate; each command-line tool runs under :func:`cli_errors`,
which prints ``error: <message>`` and exits with status 2 instead of a stack
trace.
"""
import contextlib
import sys


class UserError(Exception):
    """A problem with the user's input; ``str(err)`` is the message."""


# argparse exits with 2 for bad arguments; a bad file is the same kind of
# mistake.
USER_ERROR_EXIT_CODE = 2


def report_user_error(err: BaseException) -> None:
    """Print ``error: <message>`` to stderr and exit with status 2."""
    print(f'error: {err}', file=sys.stderr, flush=True)
    raise SystemExit(USER_ERROR_EXIT_CODE)


@contextlib.contextmanager
def cli_errors():
    """Run a tool's body; a :class:`UserError` ends it with a message."""
    try:
        yield
    except UserError as err:
        report_user_error(err)
