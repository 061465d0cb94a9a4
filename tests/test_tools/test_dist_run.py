"""tools/dist_run.py (torchrun for tools/dist_launch.sh) and the processes
it starts, when one of them fails: that process's message and the
launcher's line naming it, no traceback from the processes that only lost
it (gloo's ``Connection closed by peer``), and a real error of any process
left as it is."""
import os
import re
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch.distributed as dist
from helpers import REPO, load_tool

from rap_sam.utils.user_errors import cli_errors, peer_stopped

# What gloo raised in the process waiting for one that had ended.
GLOO_LOST_PEER = (
    '[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] '
    'Connection closed by peer [127.0.0.1]:40856. This is typically caused '
    'by a remote worker crashing.')


@pytest.fixture(scope='module')
def dist_run():
    return load_tool('tools/dist_run.py')


def _failures(**codes):
    return {
        int(rank[1:]): SimpleNamespace(exitcode=code)
        for rank, code in codes.items()
    }


def test_the_summary_names_the_process_that_failed(dist_run):
    # 143: stopped by torchrun, or ended because its peer had (cli_errors)
    assert dist_run.summary(_failures(r0=143, r1=2), 'train.py') == (
        'error: process 1 of train.py failed (exit status 2); its messages '
        'are above.')
    assert dist_run.summary(_failures(r0=2, r1=-15), 'train.py') == (
        'error: process 0 of train.py failed (exit status 2); its messages '
        'are above.')
    # a real error of each
    assert dist_run.summary(_failures(r0=2, r1=1), 'test.py') == (
        'error: process 0, 1 of test.py failed (exit status 2, 1); its '
        'messages are above.')


def test_a_killed_process_is_named_with_its_signal(dist_run):
    """A process killed outright printed nothing: "its messages are above"
    would send the user looking for none."""
    assert dist_run.summary(_failures(r0=-15, r1=-9), 'train.py') == (
        'error: process 1 of train.py was killed by SIGKILL (exit status -9) '
        'without a message; SIGKILL is most often the out-of-memory killer '
        '(see `dmesg`): use fewer processes or a smaller batch.')
    assert 'killed by signal 99 ' in dist_run.summary(
        _failures(r0=-99), 'test.py')
    # A crash in native code prints its own line (terminate called ...,
    # Fatal Python error) before it ends the process.
    assert dist_run.summary(_failures(r0=-15, r1=-6), 'test.py') == (
        'error: process 1 of test.py was killed by SIGABRT (exit status -6); '
        'its last messages above may say why.')


def test_a_node_whose_processes_were_all_stopped_says_so(dist_run):
    """On the second node of a run whose failed process ran on the first
    one, nothing here failed on its own, nor printed anything."""
    assert dist_run.summary(_failures(r2=143, r3=-15), 'train.py') == (
        'error: process 2, 3 of train.py stopped (exit status 143, -15) '
        'without an error of its own: a process of the run on another node '
        'failed (see its messages there), or a signal from outside stopped '
        'it.')


@pytest.fixture
def process_group(tmp_path):
    """A gloo process group of this process alone."""
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_lost_peer_is_told_from_other_errors(process_group):
    assert peer_stopped(RuntimeError(GLOO_LOST_PEER))
    assert peer_stopped(
        RuntimeError('Read error [127.0.0.1]:5721: Connection reset by peer'))
    assert not peer_stopped(RuntimeError('shape mismatch'))
    assert not peer_stopped(ValueError(GLOO_LOST_PEER))


def test_a_lost_peer_outside_a_process_group_is_an_error():
    assert not dist.is_initialized()
    assert not peer_stopped(RuntimeError(GLOO_LOST_PEER))


@pytest.fixture
def sigterm_handler():
    """The test process's SIGTERM handler, put back afterwards: a failed
    process under torchrun ignores SIGTERM, and every process the later
    tests start would inherit an ignored SIGTERM."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize('torchrun', [False, True])
def test_a_process_that_lost_its_peer_ends_as_stopped(torchrun, process_group,
                                                      sigterm_handler,
                                                      monkeypatch, capsys):
    """One line, or none under torchrun (its launcher names the process
    that failed), and status 143, which the launcher does not count as a
    failure; a real error under torchrun makes the process ignore the
    SIGTERM torchrun sends while it exits."""
    if torchrun:
        monkeypatch.setenv('TORCHELASTIC_RUN_ID', 'none')
    else:
        monkeypatch.delenv('TORCHELASTIC_RUN_ID', raising=False)
    with pytest.raises(SystemExit) as info:
        with cli_errors():
            raise RuntimeError(GLOO_LOST_PEER)
    assert info.value.code == 143
    assert capsys.readouterr().err == ('' if torchrun else (
        'error: another process of this distributed run stopped (Connection '
        'closed by peer); its messages say why.\n'))
    with pytest.raises(RuntimeError, match='^shape mismatch$'):
        with cli_errors():
            raise RuntimeError('shape mismatch')
    assert (signal.getsignal(signal.SIGTERM) == signal.SIG_IGN) == torchrun


# Two processes as the tools run: rank argv[1] stops with argv[2] (a user
# error, or a bug), the other waits for it in a collective. The failing one
# closes its connections, then takes a while to exit (data loader workers,
# log files): the other has ended by then, and torchrun stops it.
SCRIPT = '''import atexit, os.path as osp, runpy, sys, time
runpy.run_path(osp.join({repo!r}, 'rap_sam', 'utils', 'arg_types.py'),
               run_name=__name__)
import torch.distributed as dist
from rap_sam.utils.user_errors import UserError, cli_errors


def slow_exit():
    dist.destroy_process_group()
    time.sleep(2)


with cli_errors():
    dist.init_process_group('gloo')
    if dist.get_rank() == int(sys.argv[1]):
        atexit.register(slow_exit)
        if sys.argv[2] == 'user':
            raise UserError('the data root is missing')
        raise RuntimeError('a bug')
    dist.barrier()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(tmp_path, rank, error):
    script = tmp_path / 'two.py'
    script.write_text(SCRIPT.format(repo=REPO))
    proc = subprocess.run([
        sys.executable, 'tools/dist_run.py', '--nproc_per_node=2',
        f'--master_port={free_port()}',
        str(script),
        str(rank), error
    ],
                          cwd=REPO,
                          env=dict(
                              os.environ,
                              PYTHONPATH=REPO,
                              OMP_NUM_THREADS='1',
                              MKL_NUM_THREADS='1'),
                          capture_output=True,
                          text=True,
                          timeout=300)
    return proc, str(script)


@pytest.mark.parametrize('rank', [0, 1])
def test_a_user_error_of_one_process_is_its_line_alone(rank, tmp_path):
    """The other process's gloo traceback (Connection closed by peer) is
    gone, and the launcher names the process that failed, with its status,
    though torchrun sent it a SIGTERM while it exited."""
    proc, script = launch(tmp_path, rank, 'user')
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert proc.stderr.splitlines() == [
        'error: the data root is missing',
        f'error: process {rank} of {script} failed (exit status 2); its '
        'messages are above.'
    ]


def test_a_real_error_of_the_second_process_keeps_its_traceback(tmp_path):
    proc, script = launch(tmp_path, 1, 'bug')
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert re.search(
        r'\[rank1\]: Traceback .*\n(.*\n)*\[rank1\]: '
        r'RuntimeError: a bug\n', proc.stderr), proc.stderr
    assert 'rank0' not in proc.stderr and 'peer' not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f'error: process 1 of {script} failed (exit status 1); its messages '
        'are above.')
