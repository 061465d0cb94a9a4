"""Errors a user can fix, and how the command-line tools report them.

Every problem with what a user hands the project (a file, an image, a
prompt, a checkpoint, a config, a class list) raises a subclass of
:class:`UserError` whose message names the problem and what to do. The API
lets it propagate; each command-line tool runs under :func:`cli_errors`,
which prints ``error: <message>`` and exits with status 2 instead of a stack
trace; a Ctrl+C is one line too (``error: interrupted (Ctrl+C)``), and so
is a SIGTERM (``error: terminated (SIGTERM)``), each with the exit status a
shell reports for it (130, 143). A :class:`UserNotice` warning (random
weights, a missing class-embedding file) is shown by the tools as
``warning: <message>``, without the code location Python's warnings add.
"""
import contextlib
import signal
import sys
import warnings

from .interrupt_guard import (INTERRUPTED_EXIT_CODE, TERMINATED_EXIT_CODE,
                              Terminated, interrupted_message, release,
                              restore, terminated_message)


class UserError(Exception):
    """A problem with the user's input; ``str(err)`` is the message."""


class UserNotice(UserWarning):
    """A warning for the person running the model (it runs, but not as
    they may think): a Python warning in the API, a ``warning:`` line in
    the tools."""


def _show_notices(show):
    """``warnings.showwarning`` that prints a :class:`UserNotice` after
    ``warning:`` (no file and line of the code that warned) and
    hands every other warning to ``show``."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserNotice):
            text = str(message).strip('\n')
            sep = '\n' if '\n' in text else ' '  # a banner under the word
            print(f'warning:{sep}{text}', file=file or sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


# argparse exits with 2 for bad arguments; a bad file is the same kind of
# mistake.
USER_ERROR_EXIT_CODE = 2


def report_user_error(err: BaseException) -> None:
    """Print ``error: <message>`` to stderr and exit with status 2."""
    print(f'error: {err}', file=sys.stderr, flush=True)
    raise SystemExit(USER_ERROR_EXIT_CODE)


def _note(stop: KeyboardInterrupt, default: str) -> str:
    """What a tool leaves behind: said when it raised the interrupt again
    with it (``raise KeyboardInterrupt(note)``), else ``default``."""
    if stop.args and isinstance(stop.args[0], str):
        return stop.args[0]
    return default


def _ignore_stopped_children() -> None:
    """The user stopped the run, and the signal stopped its children too
    (a SIGTERM to the process group: docker stop, systemd, Slurm): torch's
    SIGCHLD handler would report each data loader worker's end as a
    traceback while the process exits."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except ValueError:  # not the main thread: torch's handler is not set
        pass


@contextlib.contextmanager
def cli_errors(interrupted: str = ''):
    """Run a tool's body; a :class:`UserError` ends it with a message, a
    Ctrl+C with ``error: interrupted (Ctrl+C)`` and ``interrupted`` (what
    the tool leaves behind, if anything needs saying) and status 130, a
    SIGTERM (``kill PID``) with ``error: terminated (SIGTERM)``, the same
    note and status 143. A tool that must stop what it started catches
    ``KeyboardInterrupt`` inside, stops it, and raises it again (raised
    with a text, ``raise type(stop)(note) from stop``, the text is the note
    instead: what the tool kept, known only then): a SIGTERM
    is a :class:`~rap_sam.utils.interrupt_guard.Terminated`, a
    ``KeyboardInterrupt`` too, so it goes the same way and every
    ``finally`` runs.

    A Ctrl+C or SIGTERM before it starts (while the tool imports torch) is
    the :mod:`~rap_sam.utils.interrupt_guard`'s; from here on a Ctrl+C is a
    ``KeyboardInterrupt`` again."""
    previous = release()
    show = warnings.showwarning
    warnings.showwarning = _show_notices(show)
    try:
        yield
    except UserError as err:
        report_user_error(err)
    except Terminated as stop:
        _ignore_stopped_children()
        line = terminated_message(_note(stop, interrupted))
        if line:
            print(line, file=sys.stderr, flush=True)
        raise SystemExit(TERMINATED_EXIT_CODE)
    except KeyboardInterrupt as stop:
        _ignore_stopped_children()
        print(
            interrupted_message(_note(stop, interrupted)),
            file=sys.stderr,
            flush=True)
        raise SystemExit(INTERRUPTED_EXIT_CODE)
    finally:
        warnings.showwarning = show
        restore(previous)
