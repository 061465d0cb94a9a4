"""cli_errors: what every command-line tool prints when it stops early,
and the guard that says the same of a Ctrl+C while a tool starts."""
import os.path as osp
import runpy
import signal
import subprocess
import sys

import pytest
from helpers import REPO

from rap_sam.utils.user_errors import UserError, cli_errors


def test_user_error_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        with cli_errors('never said for a refused input'):
            raise UserError('No such image: x.jpg')
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: No such image: x.jpg\n'


@pytest.mark.parametrize('note, line', [
    ('', 'error: interrupted (Ctrl+C).\n'),
    ('nothing was written', 'error: interrupted (Ctrl+C); nothing was '
     'written.\n'),
])
def test_ctrl_c_is_one_line_and_status_130(capsys, note, line):
    with pytest.raises(SystemExit) as exit_:
        with cli_errors(note):
            raise KeyboardInterrupt
    assert exit_.value.code == 130
    assert capsys.readouterr().err == line


def test_other_errors_pass_through():
    with pytest.raises(ZeroDivisionError):
        with cli_errors():
            1 / 0


GUARD = osp.join(REPO, 'rap_sam', 'utils', 'interrupt_guard.py')


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=120)


def test_guard_run_by_path_makes_ctrl_c_one_line_without_rap_sam():
    """As an entry point runs it, first: a Ctrl+C is the line cli_errors
    prints, exit status 130, and nothing of rap_sam (torch) was imported
    for it."""
    result = _run_python(f'''
import os, runpy, signal, sys, time
runpy.run_path({GUARD!r}, run_name='__main__')
print(sorted(m for m in ('rap_sam', 'torch') if m in sys.modules))
os.kill(os.getpid(), signal.SIGINT)
time.sleep(60)
''')
    assert (result.returncode, result.stdout,
            result.stderr) == (130, '[]\n', 'error: interrupted (Ctrl+C).\n')


def test_guard_leaves_an_ignored_ctrl_c_ignored():
    """A background job's shell ignores SIGINT for it: so does the tool."""
    result = _run_python(f'''
import runpy, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
runpy.run_path({GUARD!r}, run_name='__main__')
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
''')
    assert (result.returncode, result.stdout) == (0, 'True\n')


def test_importing_the_guard_installs_nothing():
    """Only running the file installs it: a module importing it (as
    user_errors does) leaves a program's Ctrl+C as it was."""
    runpy.run_path(GUARD, run_name='rap_sam.utils.interrupt_guard')
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cli_errors_takes_ctrl_c_over_from_the_guard():
    """Inside cli_errors a Ctrl+C is a KeyboardInterrupt again (a tool
    catches it to stop what it started), reported with the tool's note.
    (In a process of its own: a signal sent to the test process would
    reach whatever threads earlier tests left in it.)"""
    result = _run_python(f'''
import os, runpy, signal, sys, time
sys.path.insert(0, {REPO!r})
runpy.run_path({GUARD!r}, run_name='__main__')
assert signal.getsignal(signal.SIGINT).rap_sam_interrupt_guard
from rap_sam.utils.user_errors import cli_errors
with cli_errors('the run it started is stopped'):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)
    except KeyboardInterrupt:
        print('stopped')
        raise
''')
    assert (result.returncode, result.stdout, result.stderr) == (
        130, 'stopped\n',
        'error: interrupted (Ctrl+C); the run it started is stopped.\n')
