"""A Ctrl+C while a command-line tool starts ends it as one anywhere else.

A tool spends its first seconds importing torch and mmdet, before
:func:`rap_sam.utils.user_errors.cli_errors` runs: Python's own handler
would print a ``KeyboardInterrupt`` traceback from importlib there. Each
entry point installs this guard first; a Ctrl+C then prints the line
``cli_errors`` prints (``error: interrupted (Ctrl+C).``) and exits with
status 130. ``cli_errors`` puts Python's handler back when it starts, so
from then on a Ctrl+C is a ``KeyboardInterrupt`` again (a tool that must
stop what it started catches it).

Only the standard library is imported here. Importing anything under
``rap_sam`` first runs the package's ``__init__`` (torch, mmdet: seconds),
so an entry point runs this file by its path, before any other import of
the project::

    if __name__ == '__main__':  # first: a Ctrl+C from here on is one line
        runpy.run_path(osp.join(REPO, 'rap_sam/utils/interrupt_guard.py'),
                       run_name='__main__')

Run as a program (what ``run_name='__main__'`` does), the file installs
the guard in the running process; imported, it installs nothing.
"""
import signal
import sys
import threading

#: What a shell reports for a program ended by Ctrl+C (128 + SIGINT), so a
#: script can tell an interrupted run from a refused one.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT


def interrupted_message(note: str = '') -> str:
    """The line a Ctrl+C ends a tool with; ``note`` says what the tool
    leaves behind, if anything needs saying."""
    note = f'; {note}' if note else ''
    return f'error: interrupted (Ctrl+C){note}.'


def _interrupted_while_starting(signum, frame):
    # A second Ctrl+C (the first one's exit being slow) ends the process at
    # once, without a second line.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    print(interrupted_message(), file=sys.stderr, flush=True)
    raise SystemExit(INTERRUPTED_EXIT_CODE)


# Told apart by this mark, not by identity: the entry point runs this file
# by its path, so its handler is not the one of rap_sam.utils.interrupt_guard
# imported later.
_interrupted_while_starting.rap_sam_interrupt_guard = True


def _in_main_thread() -> bool:
    # Only the main thread may set a signal handler.
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """Make a Ctrl+C print the one line and exit with status 130. Left
    alone where SIGINT is not Python's own handler (ignored in a
    background job, or another handler set on purpose)."""
    if (_in_main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def release() -> None:
    """Python's own handler again, if the guard is installed: a Ctrl+C is
    a ``KeyboardInterrupt`` from here on."""
    handler = signal.getsignal(signal.SIGINT)
    if _in_main_thread() and getattr(handler, 'rap_sam_interrupt_guard',
                                     False):
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == '__main__':
    install()
