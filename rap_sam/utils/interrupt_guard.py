"""A Ctrl+C or a SIGTERM while a command-line tool starts ends it as one
anywhere else.

A tool spends its first seconds importing torch and mmdet, before
:func:`rap_sam.utils.user_errors.cli_errors` runs: Python's own handler
would print a ``KeyboardInterrupt`` traceback from importlib there, and a
SIGTERM would end the process without running any ``finally``. Each entry
point installs this guard first; a Ctrl+C then prints the line
``cli_errors`` prints (``error: interrupted (Ctrl+C).``) and exits with
status 130, a SIGTERM ``error: terminated (SIGTERM).`` and status 143.
``cli_errors`` takes both over when it starts: from then on a Ctrl+C is a
``KeyboardInterrupt`` again and a SIGTERM a :class:`Terminated` (a
``KeyboardInterrupt`` too), so a tool that stops what it started on a
Ctrl+C does the same on a SIGTERM, and every ``finally`` runs (hidden
temporaries of :mod:`rap_sam.utils.output_files` are removed).

Only the standard library is imported here. Importing anything under
``rap_sam`` first runs the package's ``__init__`` (torch, mmdet: seconds),
so an entry point runs this file by its path, before any other import of
the project; rap_sam/utils/arg_types.py does it for the tools (one line,
see there). Run as a program (``run_name='__main__'``), the file installs
the guard in the running process; imported, it installs nothing.
"""
import os
import signal
import sys
import threading

#: What a shell reports for a program ended by Ctrl+C (128 + SIGINT), so a
#: script can tell an interrupted run from a refused one.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
#: The same for a SIGTERM (``kill PID``): 128 + 15.
TERMINATED_EXIT_CODE = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """A SIGTERM, raised inside :func:`~rap_sam.utils.user_errors.cli_errors`
    where a Ctrl+C raises ``KeyboardInterrupt``: the code that handles a
    Ctrl+C handles it too."""


def interrupted_message(note: str = '') -> str:
    """The line a Ctrl+C ends a tool with; ``note`` says what the tool
    leaves behind, if anything needs saying."""
    note = f'; {note}' if note else ''
    return f'error: interrupted (Ctrl+C){note}.'


def terminated_message(note: str = '') -> str:
    """The line a SIGTERM ends a tool with, or ``''`` in a process that
    torchrun started: torchrun sends it to every process once one has
    failed or torchrun itself is stopped, and tools/dist_run.py then says
    what happened in one line of its own."""
    if os.environ.get('TORCHELASTIC_RUN_ID'):
        return ''
    note = f'; {note}' if note else ''
    return f'error: terminated (SIGTERM){note}.'


def say(line: str, file=None) -> None:
    """Print ``line`` to stderr (or ``file``) in one write: the processes
    of a distributed run share one stderr, and under ``python -u``
    (torchrun's) ``print`` writes the text and its newline apart, so two
    processes' lines could run into one."""
    if line:
        stream = file or sys.stderr
        stream.write(line + '\n')
        stream.flush()


# The process the handlers were installed in. A process forked from it
# (a data loader worker, a multiprocessing pool) inherits the handlers,
# but its parent stops it with a SIGTERM expecting it gone at once.
_OWNER = os.getpid()


def _die_as_before(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _stop_while_starting(signum, frame):
    if os.getpid() != _OWNER:
        _die_as_before(signum)
        return
    # A second signal (the first one's exit being slow) ends the process
    # at once, without a second line.
    signal.signal(signum, signal.SIG_DFL)
    if signum == signal.SIGTERM:
        say(terminated_message())
        raise SystemExit(TERMINATED_EXIT_CODE)
    say(interrupted_message())
    raise SystemExit(INTERRUPTED_EXIT_CODE)


def _raise_terminated(signum, frame):
    if os.getpid() != _OWNER:
        _die_as_before(signum)
        return
    # Raised once: a second SIGTERM while the first one's cleanup runs ends
    # the process at once, as a supervisor's repeated stop request means.
    signal.signal(signum, signal.SIG_DFL)
    raise Terminated()


# Told apart by this mark, not by identity: the entry point runs this file
# by its path, so its handlers are not the ones of
# rap_sam.utils.interrupt_guard imported later.
_stop_while_starting.rap_sam_interrupt_guard = True
_raise_terminated.rap_sam_interrupt_guard = True


def _in_main_thread() -> bool:
    # Only the main thread may set a signal handler.
    return threading.current_thread() is threading.main_thread()


def _ours(handler) -> bool:
    return getattr(handler, 'rap_sam_interrupt_guard', False)


def install() -> None:
    """Make a Ctrl+C print the one line and exit with status 130, a
    SIGTERM with 143. Each is left alone where it is not Python's default
    (ignored in a background job or under nohup, or another handler set on
    purpose)."""
    if not _in_main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _stop_while_starting)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_while_starting)


def release():
    """Python's own handler again for a Ctrl+C (a ``KeyboardInterrupt``
    from here on), and a SIGTERM raising :class:`Terminated`, unless a
    handler other than the guard's is in place. Returns what
    :func:`restore` needs to put the SIGTERM handler back."""
    if not _in_main_thread():
        return None
    if _ours(signal.getsignal(signal.SIGINT)):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL or _ours(previous):
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def restore(previous) -> None:
    """Put back the SIGTERM handler :func:`release` replaced: past the end
    of ``cli_errors`` nothing would catch a :class:`Terminated`. Left as
    it is once a SIGTERM came (a second one ends the process at once)."""
    if (previous is not None and _in_main_thread()
            and signal.getsignal(signal.SIGTERM) is _raise_terminated):
        signal.signal(signal.SIGTERM, previous)


if __name__ == '__main__':
    install()
