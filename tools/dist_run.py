"""torchrun for dist_launch.sh, with a failed process reported in one line.

    python tools/dist_run.py [torchrun options] SCRIPT [SCRIPT's arguments]

torchrun itself ends a run in which a process failed with its own stack
trace (``ChildFailedError``), also when the process only reported a user
error (``error: ...``, exit status 2). Here the processes' messages stay as
they printed them, and the launcher adds one line saying which processes
failed and exits with their status. The processes torchrun stopped because
another one failed are not counted as failed, nor are those whose
collective lost the failed one first (gloo's ``Connection closed by peer``:
they end as stopped ones, without a trace, see
:func:`rap_sam.utils.user_errors.peer_stopped`), so the line names the
process whose messages say why. When every process here was stopped (by a
process on another node, or by a signal from outside), the line says so.

A Ctrl+C or a SIGTERM (``kill PID``) reaches every process through
torchrun; each runs its cleanup (its ``finally`` blocks) and the launcher
ends with one line, ``error: interrupted (Ctrl+C).`` (status 130) or
``error: terminated (SIGTERM).`` (status 143).
"""
import errno
import logging
import os.path as osp
import runpy
import signal
import socket
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# First, by its path (importing rap_sam would import mmdet too): a Ctrl+C
# or SIGTERM while torch imports (seconds; torchrun's parser is torch's)
# is one line.
GUARD = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'interrupt_guard.py'),
    run_name=__name__)

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

# How a process ends when torchrun stops it: through the guard or
# cli_errors (143), or by the signal itself (before Python started); 143
# is also how one ends whose peer stopped (user_errors.stop_with_peer).
STOPPED = (GUARD['TERMINATED_EXIT_CODE'], -signal.SIGTERM)


def failed_processes(failures: dict) -> list:
    """``[(rank, exit status)]`` of the processes that failed on their
    own: once one has, torchrun stops the others with a SIGTERM."""
    failed = sorted((rank, f.exitcode) for rank, f in failures.items())
    own = [(rank, code) for rank, code in failed if code not in STOPPED]
    return own or failed


def summary(failures: dict, script: str) -> str:
    """The launcher's one line on a failed run."""
    failed = failed_processes(failures)
    ranks = ', '.join(str(rank) for rank, _ in failed)
    codes = ', '.join(str(code) for _, code in failed)
    if all(code in STOPPED for _, code in failed):
        return (f'error: process {ranks} of {script} stopped (exit status '
                f'{codes}) without an error of its own: a process of the '
                'run on another node failed (see its messages there), or a '
                'signal from outside stopped it.')
    if all(code < 0 for _, code in failed):
        names = ', '.join(_signal_name(-code) for _, code in failed)
        killed = (f'error: process {ranks} of {script} was killed by {names} '
                  f'(exit status {codes})')
        if all(code == -signal.SIGKILL for _, code in failed):
            # Nothing printed: most often the kernel's out-of-memory killer.
            return (f'{killed} without a message; SIGKILL is most often the '
                    'out-of-memory killer (see `dmesg`): use fewer processes '
                    'or a smaller batch.')
        # SIGABRT, SIGSEGV: native code crashed, and said so just before.
        return f'{killed}; its last messages above may say why.'
    return (f'error: process {ranks} of {script} failed (exit status '
            f'{codes}); its messages are above.')


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f'signal {number}'


def check_launch(args) -> str:
    """Why torchrun cannot start these processes, or '': a process count
    that is no number (torchrun's ValueError or AssertionError) and, on
    the first node, a port another job listens on (a 36-line
    DistNetworkError once the store tried to bind it)."""
    count = str(args.nproc_per_node)
    if count not in ('auto', 'cpu',
                     'gpu') and not (count.isdigit() and int(count) >= 1):
        return (f'the number of processes must be a whole number >= 1, got '
                f'{count!r}.')
    if int(args.node_rank) != 0:
        return ''
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.master_addr, int(args.master_port)))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return (f'port {args.master_port} is in use (another '
                        'distributed job?): set PORT to a free port, e.g. '
                        f'PORT={int(args.master_port) + 1}.')
    return ''


def main(argv=None):
    args = parse_args(argv)
    problem = check_launch(args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        raise SystemExit(2)
    # The agent logs each failure over several lines; the summary below
    # says the same in one. Each of torch's modules sets its logger's own
    # level, so the parent's alone would not do.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith('torch.distributed.elastic'):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        print(summary(err.failures, args.training_script), file=sys.stderr)
        codes = [code for _, code in failed_processes(err.failures)]
        positive = [code for code in codes if code > 0]
        raise SystemExit(positive[0] if positive else 1)
    except SignalException as err:
        # torchrun has stopped the processes (each ran its cleanup); its
        # own handler raised this in place of a KeyboardInterrupt.
        sig = signal.Signals(err.sigval)
        if sig == signal.SIGINT:
            line = GUARD['interrupted_message']()
        elif sig == signal.SIGTERM:
            line = GUARD['terminated_message']()
        else:  # SIGHUP, SIGQUIT: torchrun handles them alike
            line = f'error: terminated ({sig.name}).'
        if line:
            print(line, file=sys.stderr, flush=True)
        code = 128 + sig
        raise SystemExit(code)


if __name__ == '__main__':
    main()
