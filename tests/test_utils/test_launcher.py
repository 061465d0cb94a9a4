"""How a launched process ends once its run has finished
(:func:`rap_sam.utils.launcher.exit_closed_process`): as the interpreter
would end it, with nothing written lost, but without its finalization,
in which gloo's worker threads could abort a run that succeeded."""
import subprocess
import sys

from helpers import REPO

SCRIPT = '''import atexit, sys, threading, time
import torch.distributed as dist
from rap_sam.utils.launcher import close_distributed, exit_closed_process
folder = sys.argv[1]
exit_closed_process()  # no process group was closed: returns
print('went on', flush=True)
dist.init_process_group(
    'gloo', init_method=f'file://{folder}/store', rank=0, world_size=1)
atexit.register(lambda: open(f'{folder}/atexit', 'w').write('ran'))

def late():
    time.sleep(0.5)
    open(f'{folder}/thread', 'w').write('joined')

threading.Thread(target=late).start()
sys.stdout.write('buffered')  # no newline: flushed only at exit
close_distributed()
assert not dist.is_initialized()
exit_closed_process()
print(' after the exit')
'''


def test_the_process_ends_with_its_output_threads_and_atexit(tmp_path):
    proc = subprocess.run([sys.executable, '-c', SCRIPT,
                           str(tmp_path)],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == 'went on\nbuffered'
    assert (tmp_path / 'thread').read_text() == 'joined'
    assert (tmp_path / 'atexit').read_text() == 'ran'
