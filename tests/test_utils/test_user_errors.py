"""cli_errors: what every command-line tool prints when it stops early,
and the guard that says the same of a Ctrl+C while a tool starts."""
import os
import os.path as osp
import re
import runpy
import signal
import subprocess
import sys
import warnings

import pytest
from helpers import REPO

from rap_sam.utils.user_errors import UserError, UserNotice, cli_errors


def test_user_error_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        with cli_errors('never said for a refused input'):
            raise UserError('No such image: x.jpg')
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: No such image: x.jpg\n'


class _Writes:
    """A stream that keeps each write call apart, as an unbuffered one
    (``python -u``) hands each to the pipe."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass


def test_a_line_is_one_write(monkeypatch):
    """The processes of a distributed run share one stderr: a line written
    in two parts (print's text, then its newline) could run into another
    process's line."""
    stream = _Writes()
    monkeypatch.setattr(sys, 'stderr', stream)
    with pytest.raises(SystemExit):
        with cli_errors():
            raise UserError('Checkpoint file not found: x.pth')
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        with cli_errors():
            warnings.warn('random weights', UserNotice)
    assert stream.writes == [
        'error: Checkpoint file not found: x.pth\n',
        'warning: random weights\n'
    ]


def test_a_user_error_from_a_loader_worker_is_its_own_line(capsys):
    """PyTorch raises a worker's error again in the main process, with the
    worker's traceback as the message: the line is the error's own."""
    from torch.utils.data import DataLoader, Dataset

    class Refusing(Dataset):

        def __len__(self):
            return 2

        def __getitem__(self, idx):
            raise UserError(f'sample {idx}: a: b is damaged')

    with pytest.raises(SystemExit) as exit_:
        with cli_errors():
            next(iter(DataLoader(Refusing(), num_workers=1)))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: sample 0: a: b is damaged\n'


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


def test_sigterm_is_one_line_and_status_143(capsys):
    from rap_sam.utils.interrupt_guard import Terminated
    with pytest.raises(SystemExit) as exit_:
        with cli_errors('nothing was written'):
            raise Terminated()
    assert exit_.value.code == 143
    assert capsys.readouterr().err == ('error: terminated (SIGTERM); nothing '
                                       'was written.\n')


def test_sigterm_is_caught_where_ctrl_c_is():
    """A tool that stops what it started on a Ctrl+C (except
    KeyboardInterrupt) does so on a SIGTERM too."""
    from rap_sam.utils.interrupt_guard import Terminated
    assert issubclass(Terminated, KeyboardInterrupt)


def test_guard_run_by_path_makes_sigterm_one_line_without_rap_sam():
    result = _run_python(f'''
import os, runpy, signal, sys, time
runpy.run_path({GUARD!r}, run_name='__main__')
print(sorted(m for m in ('rap_sam', 'torch') if m in sys.modules))
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
finally:
    print('finally ran')
''')
    assert (result.returncode, result.stdout,
            result.stderr) == (143, '[]\nfinally ran\n',
                               'error: terminated (SIGTERM).\n')


def test_guard_leaves_an_ignored_sigterm_ignored():
    result = _run_python(f'''
import runpy, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
runpy.run_path({GUARD!r}, run_name='__main__')
print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
''')
    assert (result.returncode, result.stdout) == (0, 'True\n')


# Inside cli_errors, a SIGTERM arrives while an output is being written
# (its hidden temporary open), after a first output was finished. The
# script prints the folder's listing from its own finally: what cleanup
# had left by then.
WRITING = '''
import os, runpy, signal, sys, time
sys.path.insert(0, {repo!r})
runpy.run_path({guard!r}, run_name='__main__')
from rap_sam.utils.output_files import atomic_output, write_bytes
from rap_sam.utils.user_errors import cli_errors
out = sys.argv[1]
with cli_errors('the finished results are kept'):
    write_bytes(os.path.join(out, 'done.json'), b'{{}}')
    with atomic_output(os.path.join(out, 'half.png')) as tmp:
        with open(tmp, 'wb') as f:
            f.write(b'half')
        print(sorted(os.listdir(out)), flush=True)
        {send}
        time.sleep(60)
'''


def _run_writer(tmp_path, send: str, env=None) -> subprocess.CompletedProcess:
    code = WRITING.format(repo=REPO, guard=GUARD, send=send)
    return subprocess.run(
        [sys.executable, '-c', code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})))


def test_sigterm_while_writing_leaves_no_temporary(tmp_path):
    result = _run_writer(tmp_path, 'os.kill(os.getpid(), signal.SIGTERM)')
    assert (result.returncode, result.stderr) == (
        143, 'error: terminated (SIGTERM); the finished results are kept.\n')
    # The temporary was there when the signal came, and is gone.
    listing = eval(result.stdout)
    assert len(listing) == 2 and listing[1] == 'done.json'
    assert re.fullmatch(r'\.half\.png\.[0-9a-f]{8}\.part\.png', listing[0])
    assert sorted(os.listdir(tmp_path)) == ['done.json']
    assert (tmp_path / 'done.json').read_bytes() == b'{}'


def test_sigterm_from_another_process_while_writing(tmp_path):
    """``kill PID`` from outside, as a user or a supervisor sends it."""
    code = WRITING.format(repo=REPO, guard=GUARD, send='')
    proc = subprocess.Popen(
        [sys.executable, '-c', code, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)
    try:
        line = proc.stdout.readline()
        assert '.part.png' in line, proc.communicate(timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, stderr) == (
        143, 'error: terminated (SIGTERM); the finished results are kept.\n')
    assert sorted(os.listdir(tmp_path)) == ['done.json']


def test_sigterm_under_torchrun_is_silent(tmp_path):
    """torchrun sends every process a SIGTERM once one has failed: the
    launcher (tools/dist_run.py) says what happened, the processes clean
    up without a line each."""
    result = _run_writer(
        tmp_path,
        'os.kill(os.getpid(), signal.SIGTERM)',
        env=dict(TORCHELASTIC_RUN_ID='none'))
    assert (result.returncode, result.stderr) == (143, '')
    assert sorted(os.listdir(tmp_path)) == ['done.json']


def test_second_sigterm_during_cleanup_ends_at_once(tmp_path):
    result = _run_python(f'''
import os, runpy, signal, sys, time
sys.path.insert(0, {REPO!r})
runpy.run_path({GUARD!r}, run_name='__main__')
from rap_sam.utils.user_errors import cli_errors
with cli_errors():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    finally:
        print('cleaning up', flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
        print('never')
''')
    assert (result.returncode, result.stdout,
            result.stderr) == (-signal.SIGTERM, 'cleaning up\n', '')


def test_forked_child_still_dies_of_sigterm():
    """A process forked inside cli_errors (a data loader worker, a pool)
    inherits the handler; its parent's SIGTERM still ends it at once,
    without a KeyboardInterrupt traceback from the child."""
    result = _run_python(f'''
import os, runpy, signal, sys, time
sys.path.insert(0, {REPO!r})
runpy.run_path({GUARD!r}, run_name='__main__')
from rap_sam.utils.user_errors import cli_errors
with cli_errors():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b'x')
        try:
            time.sleep(60)
        finally:
            print('child cleanup ran')
        os._exit(0)
    os.read(read, 1)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    print(os.WIFSIGNALED(status) and os.WTERMSIG(status))
''')
    assert (result.returncode, result.stdout, result.stderr) == (0, '15\n', '')


def test_cli_errors_puts_the_sigterm_handler_back():
    """Past cli_errors nothing would catch the exception a SIGTERM raises
    inside: the guard's handler (or Python's default) is back."""
    result = _run_python(f'''
import runpy, signal, sys
sys.path.insert(0, {REPO!r})
runpy.run_path({GUARD!r}, run_name='__main__')
guard = signal.getsignal(signal.SIGTERM)
from rap_sam.utils.user_errors import cli_errors
with cli_errors():
    inside = signal.getsignal(signal.SIGTERM)
print(inside is not guard, signal.getsignal(signal.SIGTERM) is guard)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
with cli_errors():
    pass
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
''')
    assert (result.returncode, result.stdout,
            result.stderr) == (0, 'True True\nTrue\n', '')


def test_an_interrupt_raised_with_a_note_says_it_in_the_one_line(capsys):
    """A tool that learns what it kept only when stopped raises the
    interrupt again with it: the note replaces cli_errors' own."""
    with pytest.raises(SystemExit) as exit_:
        with cli_errors('nothing written'):
            raise KeyboardInterrupt('the 2 frames are in out.mp4')
    assert exit_.value.code == 130
    assert capsys.readouterr().err == (
        'error: interrupted (Ctrl+C); the 2 frames are in out.mp4.\n')
    with pytest.raises(SystemExit):
        with cli_errors('nothing written'):
            raise KeyboardInterrupt
    assert capsys.readouterr().err == (
        'error: interrupted (Ctrl+C); nothing written.\n')


def test_a_notice_is_a_warning_line_in_a_tool(capsys, monkeypatch):
    """Random weights are said as ``warning:``, not with the file and line
    of the code that warned; other warnings go where they went, and the
    API's warnings are Python's again after the tool's body."""
    import warnings
    others = []
    monkeypatch.setattr(warnings, 'showwarning',
                        lambda *args: others.append(args[:2]))
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        with cli_errors():
            warnings.warn('No --weights given', UserNotice)
            warnings.warn('\n!!\n!! a banner\n!!', UserNotice)
            warnings.warn('deprecated', DeprecationWarning)
    assert capsys.readouterr().err.splitlines() == [
        'warning: No --weights given', 'warning:', '!!', '!! a banner', '!!'
    ]
    assert [(str(m), c)
            for m, c in others] == [('deprecated', DeprecationWarning)]
    assert warnings.showwarning is before


@pytest.mark.parametrize('stop', ['Terminated', 'KeyboardInterrupt'])
def test_a_stopped_run_stops_watching_its_children(capsys, stop):
    """A SIGTERM to the process group (docker stop, systemd, Slurm) ends the
    data loader workers too, and torch's SIGCHLD handler reported each as
    a traceback while the process exited, after the one line (seen on
    tools/train.py); the handler is set back once the run is stopped."""
    from rap_sam.utils.interrupt_guard import Terminated
    seen = []
    previous = signal.signal(signal.SIGCHLD, lambda *a: seen.append(a))
    try:
        with pytest.raises(SystemExit):
            with cli_errors():
                raise {
                    'Terminated': Terminated,
                    'KeyboardInterrupt': KeyboardInterrupt
                }[stop]()
        assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert capsys.readouterr().err.startswith('error: ')
