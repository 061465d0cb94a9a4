"""Errors a user can fix, and how the command-line tools report them.

Every problem with what a user hands the project (a file, an image, a
prompt, a checkpoint, a config, a class list) raises a subclass of
:class:`UserError` whose message names the problem and what to do. The API
lets it propagate; each command-line tool runs under :func:`cli_errors`,
which prints ``error: <message>`` and exits with status 2 instead of a stack
trace; a Ctrl+C is one line too (``error: interrupted (Ctrl+C)``), and so
is a SIGTERM (``error: terminated (SIGTERM)``), each with the exit status a
shell reports for it (130, 143). In a distributed run, a process whose
collective lost another process of the run (gloo's ``Connection closed by
peer``) did not fail itself: it ends as a stopped one, without a trace
(:func:`peer_stopped`), and the process that failed says why. A
:class:`UserNotice` warning (random weights, a missing class-embedding
file) is shown by the tools as ``warning: <message>``, without the code
location Python's warnings add. A stdout closed before the tool is done
(``TOOL | head -1``) ends it with one line too (:func:`stdout_closed`).
"""
import contextlib
import logging
import os
import signal
import sys
import warnings

from .interrupt_guard import (INTERRUPTED_EXIT_CODE, TERMINATED_EXIT_CODE,
                              Terminated, interrupted_message, release,
                              restore, say, terminated_message)


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
            say(f'warning:{sep}{text}', file)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


# argparse exits with 2 for bad arguments; a bad file is the same kind of
# mistake.
USER_ERROR_EXIT_CODE = 2


def user_message(err: BaseException) -> str:
    """``str(err)``, without the worker's traceback PyTorch's data loader
    writes into the message of an error it raises again in the main
    process (the type is kept, the message is the last line)."""
    text = str(err)
    if '\nOriginal Traceback' not in text:
        return text
    return text.rstrip().splitlines()[-1].split(': ', 1)[-1]


def report_user_error(err: BaseException) -> None:
    """Print ``error: <message>`` to stderr and exit with status 2."""
    say(f'error: {user_message(err)}')
    raise SystemExit(USER_ERROR_EXIT_CODE)


#: What a gloo collective raises when a process of the run has ended (its
#: sockets closed while this one waited for it, read from it, wrote to it).
PEER_GONE = ('Connection closed by peer', 'Connection reset by peer',
             'Broken pipe')


def peer_stopped(err: BaseException) -> bool:
    """Whether ``err`` is a collective of a distributed run failing because
    another process of the run ended: that process says why, this one
    only stopped with it (a traceback here hid the message that mattered).
    Only while a process group exists: elsewhere these words come from
    other sources."""
    dist = sys.modules.get('torch.distributed')
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return False
    return isinstance(err, RuntimeError) and any(
        text in str(err) for text in PEER_GONE)


def _launched_by_torchrun() -> bool:
    return bool(os.environ.get('TORCHELASTIC_RUN_ID'))


def stop_with_peer(err: BaseException) -> None:
    """End a process that :func:`peer_stopped`: as torchrun's SIGTERM
    would a moment later (status 143; tools/dist_run.py does not count it
    as failed and names the process that failed), silently under torchrun,
    whose launcher says which process failed, else with one line."""
    if not _launched_by_torchrun():
        reason = next(text for text in PEER_GONE if text in str(err))
        say(f'error: another process of this distributed run stopped '
            f'({reason}); its messages say why.')
    raise SystemExit(TERMINATED_EXIT_CODE)


def _keep_exit_status() -> None:
    """Under torchrun, ignore a SIGTERM from here on: the process failed
    (its message said, or its traceback to come) and is exiting. The other
    processes, whose collectives fail once it has closed its connections,
    may end first, and torchrun then sends it a SIGTERM; ended by it (143,
    or -15 late in the interpreter's exit, where Python's handlers are
    gone), it would be one torchrun stopped, and the launcher would name
    the wrong process, or none, as the one that failed. (A process that
    hangs while exiting gets torchrun's SIGKILL 30 s later.)"""
    if not _launched_by_torchrun():
        return  # a test calling main() keeps its own handler
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


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


#: What a shell reports for a program a closed pipe ended (128 + SIGPIPE):
#: a tool whose stdout is closed early stops as a C program would.
STDOUT_CLOSED_EXIT_CODE = 128 + signal.SIGPIPE


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (``TOOL | head -1``
    once head has its line, ``| grep -m1 ...`` once it has a match):
    every write to it raises ``BrokenPipeError``. A ``BrokenPipeError``
    from elsewhere (a socket, a child's pipe) is not this."""
    try:
        import select
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR is always reported
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, ValueError, OSError):  # no poll, no descriptor
        return False


def _discard_stdout() -> None:
    """Point stdout at the null device: what is still buffered for it, and
    Python's flush of it at exit, go nowhere instead of raising
    ``BrokenPipeError`` again (``Exception ignored ... BrokenPipeError``)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def stdout_closed_message(note: str = '') -> str:
    """The line a tool whose stdout was closed early ends with."""
    note = f'; {note}' if note else ''
    return ('error: stdout was closed before the run ended (the command '
            'reading it, such as head, exited): stopped; redirect stdout to '
            f'a file to keep all it prints{note}.')


def _log_to_closed_stdout(handle_error):
    """``logging.Handler.handleError`` that lets a ``BrokenPipeError`` of
    a closed stdout through to :func:`cli_errors` (mmengine's logger writes
    to stdout; logging itself would print ``--- Logging error ---`` and a
    traceback for every record after) and hands every other error to
    ``handle_error``."""

    def handleError(self, record):
        err = sys.exc_info()[1]
        if isinstance(err, BrokenPipeError) and stdout_closed():
            raise err
        handle_error(self, record)

    return handleError


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
    ``finally`` runs. A collective that lost another process of a
    distributed run (:func:`peer_stopped`) ends the process as stopped,
    status 143, in one line (none under torchrun); every other error
    keeps its traceback.

    A Ctrl+C or SIGTERM before it starts (while the tool imports torch) is
    the :mod:`~rap_sam.utils.interrupt_guard`'s; from here on a Ctrl+C is a
    ``KeyboardInterrupt`` again."""
    previous = release()
    show = warnings.showwarning
    warnings.showwarning = _show_notices(show)
    handle_error = logging.Handler.handleError
    logging.Handler.handleError = _log_to_closed_stdout(handle_error)
    try:
        yield
        sys.stdout.flush()  # a closed stdout is found here, not at exit
    except UserError as err:
        _keep_exit_status()
        report_user_error(err)
    except Terminated as stop:
        _ignore_stopped_children()
        line = terminated_message(_note(stop, interrupted))
        say(line)
        raise SystemExit(TERMINATED_EXIT_CODE)
    except KeyboardInterrupt as stop:
        _ignore_stopped_children()
        say(interrupted_message(_note(stop, interrupted)))
        raise SystemExit(INTERRUPTED_EXIT_CODE)
    except BrokenPipeError:
        if not stdout_closed():
            _keep_exit_status()
            raise
        _discard_stdout()
        try:
            say(stdout_closed_message(interrupted))
        except BrokenPipeError:  # stderr went to the same pipe (2>&1)
            pass
        raise SystemExit(STDOUT_CLOSED_EXIT_CODE)
    except Exception as err:
        if not peer_stopped(err):
            _keep_exit_status()
            raise
        stop_with_peer(err)
    finally:
        warnings.showwarning = show
        logging.Handler.handleError = handle_error
        restore(previous)
