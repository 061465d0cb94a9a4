"""A SIGTERM (``kill PID``) ends every tool as a Ctrl+C does: while it
starts (importing torch), one line and exit status 143; under torchrun,
each process runs its cleanup and the launcher says it in one line. The
signals go to child processes only, never to the test process."""
import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, TOOL_STARTS, terminate_while_importing

TERMINATED = 'error: terminated (SIGTERM).\n'


@pytest.mark.parametrize('tool, args', TOOL_STARTS)
def test_sigterm_while_importing_is_one_line(tool, args, tmp_path):
    code, stderr = terminate_while_importing(
        tool,
        *args.format(tmp=tmp_path).split())
    assert (code, stderr) == (143, TERMINATED)
    # Stopped before it started its work: nothing written.
    assert list(tmp_path.iterdir()) == []


# A script torchrun runs on two processes, as tools/train.py runs: the
# guard first, the work under cli_errors. Each process finishes one output,
# then holds a second one's temporary open, or (with FAIL_RANK) that rank
# reports a user error at once.
SCRIPT = '''
import os, runpy, sys, time
sys.path.insert(0, {repo!r})
runpy.run_path(os.path.join({repo!r}, 'rap_sam', 'utils', 'arg_types.py'),
               run_name=__name__)
from rap_sam.utils.output_files import atomic_output, write_bytes
from rap_sam.utils.user_errors import UserError, cli_errors
rank, out = os.environ['RANK'], sys.argv[1]
with cli_errors():
    if rank == os.environ.get('FAIL_RANK'):
        raise UserError('No such file: data.json')
    write_bytes(os.path.join(out, f'done{{rank}}.txt'), b'done')
    with atomic_output(os.path.join(out, f'half{{rank}}.txt')) as tmp:
        with open(tmp, 'w') as f:
            f.write('half')
        print('ready', rank, flush=True)
        time.sleep(120)
'''


def _start_dist_run(tmp_path, **env) -> subprocess.Popen:
    script = tmp_path / 'work.py'
    script.write_text(SCRIPT.format(repo=REPO))
    out = tmp_path / 'out'
    out.mkdir()
    # One thread each (two processes share the machine); a port of its own.
    env = dict(os.environ, OMP_NUM_THREADS='1', **env)
    return subprocess.Popen([
        sys.executable, 'tools/dist_run.py', '--nproc-per-node', '2',
        '--master-port', '0',
        str(script),
        str(out)
    ],
                            cwd=REPO,
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)


def test_sigterm_to_the_launcher_stops_every_process_cleanly(tmp_path):
    proc = _start_dist_run(tmp_path)
    try:
        ready = {proc.stdout.readline(), proc.stdout.readline()}
        assert ready == {'ready 0\n',
                         'ready 1\n'}, proc.communicate(timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, stderr) == (143, TERMINATED)
    # Both processes ran their cleanup: the finished outputs stay, no
    # hidden temporary is left.
    assert sorted(os.listdir(tmp_path / 'out')) == ['done0.txt', 'done1.txt']


def test_process_stopped_by_torchrun_is_not_counted_as_failed(tmp_path):
    """Rank 1 fails; torchrun stops rank 0 (SIGTERM), which cleans up
    without a line: the summary names rank 1 alone."""
    proc = _start_dist_run(tmp_path, FAIL_RANK='1')
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    script = tmp_path / 'work.py'
    assert (proc.returncode, stderr) == (
        2, 'error: No such file: data.json\n'
        f'error: process 1 of {script} failed (exit status 2); its messages '
        'are above.\n')
    assert not [
        name for name in os.listdir(tmp_path / 'out') if '.part' in name
    ]
