"""tools/analysis/kill_resume.py as docs/training.md runs it, with the
input a user can get wrong: each ends in one line, before any training
where it can, and nothing of the user's is deleted; Ctrl+C stops the
training the tool started (it runs in its own session, out of the
terminal's reach). Its other refusals (a --root that is a file, counts
below one) are tested with the toy tools (test_toy_tools.py).

Costs about 60 s on a 2-core machine, most of it importing the tool (torch,
mmengine) and two starts of tools/train.py."""
import os
import signal
import sys
import time

import pytest
from helpers import (assert_usage_error, assert_user_error, load_tool,
                     run_script, start_in_terminal)

TOOL = 'tools/analysis/kill_resume.py'


@pytest.mark.parametrize('option, value, words', [
    ('--kills', '0', 'whole number >= 1'),
    ('--save-window', '-1', 'seconds >= 0'),
])
def test_bad_counts_are_usage_errors(tmp_path, option, value, words):
    result = run_script(TOOL, '--root', tmp_path / 'out', option, value)
    assert_usage_error(result, option, words)
    assert not (tmp_path / 'out').exists()


def test_a_folder_of_someone_elses_is_refused_and_kept(tmp_path):
    """The tool replaces ROOT/killed and ROOT/uninterrupted: in a folder
    that holds anything but its own files they may be someone's."""
    root = tmp_path / 'mine'
    (root / 'killed').mkdir(parents=True)
    (root / 'killed' / 'notes.txt').write_text('keep me')
    (root / 'thesis.tex').write_text('keep me too')
    line = assert_user_error(
        run_script(TOOL, '--root', root), str(root), 'thesis.tex',
        'did not write')
    assert 'empty or new --root' in line
    assert sorted(os.listdir(root)) == ['killed', 'thesis.tex']
    assert (root / 'killed' / 'notes.txt').read_text() == 'keep me'


def test_a_refused_training_option_is_its_one_line(tmp_path):
    """tools/train.py refuses a malformed --cfg-options item in one line
    (exit status 2): the tool ends with that line, not with where its log
    is. The root holds an earlier call's files: they are the tool's own."""
    root = tmp_path / 'kr'
    (root / 'killed').mkdir(parents=True)
    (root / 'ref.log').write_text('an earlier call\n')
    result = run_script(TOOL, '--root', root, '--cfg-options',
                        'not_a_key_value')
    assert_user_error(result, '--cfg-options', 'key=value')
    assert 'uninterrupted run' in result.stdout
    assert not os.listdir(root / 'killed')  # replaced


def _processes_naming(text: str) -> list:
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                args = f.read().decode(errors='replace')
        except OSError:
            continue
        if pid.isdigit() and text in args:
            found.append(int(pid))
    return found


def test_ctrl_c_stops_the_training_in_one_line(tmp_path):
    """Ctrl+C in a terminal signals the foreground process group: the tool,
    not the training it started in a session of its own."""
    root = tmp_path / 'kr'
    proc = start_in_terminal(TOOL, '--root', root)
    try:
        assert 'uninterrupted run' in proc.stdout.readline()
        end = time.time() + 60
        while not _processes_naming(str(root / 'uninterrupted')):
            assert time.time() < end, 'the training did not start'
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        # A killed process is listed until the kernel has released its
        # memory (a training's: up to seconds on a busy machine).
        end = time.time() + 10
        while True:
            survivors = _processes_naming(str(root / 'uninterrupted'))
            if not survivors or time.time() > end:
                break
            time.sleep(0.1)
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert survivors == []
    assert proc.returncode == 128 + signal.SIGINT
    assert stderr.splitlines() == [
        'error: interrupted (Ctrl+C); the training it had started is '
        'stopped. Run the command again to start over.'
    ]


def test_a_ctrl_c_while_the_training_starts_stops_it(tmp_path, monkeypatch):
    """Popen forks, then waits for the exec: a Ctrl+C in that wait lost the
    Popen object, and the training ran on, unknown to the cleanup (a
    survivor seen by test_ctrl_c_stops_the_training_in_one_line on a busy
    machine)."""
    import subprocess
    tool = load_tool(TOOL)
    execute = subprocess.Popen._execute_child
    children = []

    def interrupted_after_fork(self, *args, **kwargs):
        execute(self, *args, **kwargs)
        children.append(self.pid)
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, '_execute_child',
                        interrupted_after_fork)
    runs = []
    with pytest.raises(KeyboardInterrupt):
        tool.Training([sys.executable, '-c', 'import time; time.sleep(60)'],
                      dict(os.environ), str(tmp_path / 'log'), runs)
    monkeypatch.undo()
    assert runs == [] and len(children) == 1
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(children[0], 0)


def test_a_training_stopped_before_its_reader_started_is_waited_for(
        tmp_path, monkeypatch):
    """A Ctrl+C while the reader thread starts (Thread.start waits for it)
    left a Training whose reader wait() could not join: a traceback
    instead of the one line. Its process is still stopped and waited
    for."""
    import threading
    tool = load_tool(TOOL)

    def interrupted(thread):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, 'start', interrupted)
    runs = []
    with pytest.raises(KeyboardInterrupt):
        tool.Training([sys.executable, '-c', 'import time; time.sleep(60)'],
                      dict(os.environ), str(tmp_path / 'log'), runs)
    monkeypatch.undo()
    assert len(runs) == 1
    assert runs[0].kill() == -signal.SIGKILL
