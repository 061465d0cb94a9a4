"""Every script in tools/ and demo/ starts as a user starts it: ``python
SCRIPT --help`` from the repository root and from another folder, and the
launchers print their usage when called without arguments."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from helpers import REPO

# Modules beside the scripts, not scripts.
LIBRARIES = {'demo/browser.py', 'demo/demo_cli.py'}
SCRIPTS = sorted({
    osp.relpath(osp.join(d, f), REPO)
    for folder in ('tools', 'demo')
    for d, _, files in os.walk(osp.join(REPO, folder))
    for f in files if f.endswith('.py')
} - LIBRARIES)
# Users run these from wherever they are (the README's tools commands run
# from the repository root).
ANYWHERE = [s for s in SCRIPTS if s.startswith('demo/')] + ['tools/test.py']


def test_scripts_found():
    assert {
        'tools/test.py', 'tools/analysis/benchmark.py', 'demo/demo.py',
        'demo/app.py'
    } <= set(SCRIPTS)


def _start(args, cwd):
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)


@pytest.mark.parametrize('where', ['root', 'elsewhere'])
def test_help(where, tmp_path):
    """``--help`` exits 0 with argparse's usage text. From elsewhere the
    script is named by its absolute path. Two at a time: most of each run
    is importing torch and mmdet."""
    cwd = REPO if where == 'root' else str(tmp_path)
    scripts = SCRIPTS if where == 'root' else ANYWHERE
    failures = []
    for i in range(0, len(scripts), 2):
        batch = scripts[i:i + 2]
        procs = [
            _start([
                sys.executable,
                script if where == 'root' else osp.join(REPO, script), '--help'
            ], cwd) for script in batch
        ]
        for script, proc in zip(batch, procs):
            out, err = proc.communicate(timeout=600)
            if (proc.returncode != 0 or not out.startswith('usage: ')
                    or 'Traceback' in err):
                failures.append((script, proc.returncode, err[-2000:]))
    assert not failures
    # --help writes nothing where it runs.
    assert os.listdir(cwd) == [] or where == 'root'


@pytest.mark.parametrize('script, usage', [
    ('dist_test.sh', 'CONFIG CHECKPOINT NUM_GPUS'),
    ('dist_train.sh', 'CONFIG NUM_GPUS'),
])
def test_launchers_without_arguments(script, usage):
    proc = subprocess.run(['bash', f'tools/{script}'],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith('usage: ') and usage in proc.stderr
