"""Kill the toy training with SIGKILL at random moments, resume it each
time with ``--resume``, and compare its final weights with those of an
uninterrupted run.

    python tools/analysis/kill_resume.py [--kills 20] [--seed 0]
        [--epochs 8] [--coco-train 8] [--videos 4]
        [--save-window 0.04] [--keep-reference]
        [--root work_dirs/kill_resume] [--cfg-options k=v ...]

A benchmark, not a test: it trains the toy recipe
(configs/rap_sam/toy_rap_sam_train.py on tools/make_toy_data.py's data, as
tools/toy_train_eval.py does) on fewer images and epochs, checkpointing
every epoch (``max_keep_ckpts=1``, the config's), with the data loaded in
the main process (``num_workers=0``: workers' random states are not in
checkpoints, see AtomicCheckpointHook). First one uninterrupted run; then
the same run, killed ``--kills`` times: half of the kills at a random
moment of the run (start-up included), half a random instant after the
checkpoint's temporary file appears (those land inside or just after the
write). After each kill it checks that ``last_checkpoint`` names a
complete checkpoint, then resumes. It prints the maximum absolute
difference between the final weights of both runs per group of tensors
(the first two parts of the key) and exits with 1 when the interrupted
run did not finish or a kill left no usable checkpoint.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import random
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools'))
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
positive_int = CLI['positive_int']

SAVING = 'Saving checkpoint at'
TRAINING = 'Epoch(train)'

#: What the tool writes under --root, all of it replaced by a later call: a
#: folder holding anything else is someone's, and is refused.
OWN_ENTRIES = frozenset({
    'data', 'embd', 'uninterrupted', 'killed', 'ref.log', 'killed.log',
    'uninterrupted.json'
})


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f'expected a number of seconds >= 0, got {text!r}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kills', type=positive_int, default=20)
    parser.add_argument('--seed', type=int, default=0, help='kill moments')
    parser.add_argument('--epochs', type=positive_int, default=8)
    parser.add_argument(
        '--coco-train',
        type=positive_int,
        default=8,
        help='toy COCO training images (the toy run has 64)')
    parser.add_argument(
        '--videos',
        type=positive_int,
        default=4,
        help='toy YouTube-VIS videos (the toy run has 24)')
    parser.add_argument(
        '--save-window',
        type=seconds,
        default=0.04,
        help='kills aimed at a save land up to this many seconds after its '
        'temporary file appears (writing the toy checkpoint, fsync and '
        'rename and last_checkpoint take a few hundredths of a second)')
    parser.add_argument(
        '--keep-reference',
        action='store_true',
        help='reuse the uninterrupted run of an earlier call with the same '
        'options')
    parser.add_argument(
        '--root',
        default='work_dirs/kill_resume',
        help='data, runs and logs (a relative path is under the current '
        'folder)')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from make_toy_data import make_toy_data
from toy_train_eval import (epoch_options, toy_train_options,
                            write_toy_class_embeddings)

from rap_sam.engine import is_complete_checkpoint
from rap_sam.utils.checkpoint import load_local_checkpoint
from rap_sam.utils.output_files import make_out_dir, output_error, write_json
from rap_sam.utils.user_errors import (USER_ERROR_EXIT_CODE, UserError,
                                       cli_errors)


class Training:
    """One tools/train.py process, its output teed into ``log``; added to
    ``started`` as soon as it runs, so that a Ctrl+C at any moment after
    finds it to stop."""

    def __init__(self, cmd, env, log, started: list):
        self.start = time.time()
        self.first_iter = self.saving = None
        self.saves = []
        self.save_event = threading.Event()
        # Made first, started last: a Ctrl+C at any point finds a reader
        # for wait() to join or pass over.
        self.reader = threading.Thread(
            target=self._read, args=(log, ), daemon=True)
        # Made, then started: Popen forks, then waits for the exec, and a
        # Ctrl+C in that wait lost the object, the training running on
        # untracked; its pid is set by then and the session is killed.
        self.proc = subprocess.Popen.__new__(subprocess.Popen)
        try:
            self.proc.__init__(
                cmd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True)  # its loader workers die with it
        except KeyboardInterrupt:
            pid = getattr(self.proc, 'pid', None)
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:  # before its setsid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        started.append(self)
        self.reader.start()

    def _read(self, log):
        with open(log, 'a') as f:
            for line in self.proc.stdout:
                f.write(line)
                now = time.time() - self.start
                if TRAINING in line and self.first_iter is None:
                    self.first_iter = now
                if SAVING in line:
                    self.saves.append(now)
                    self.save_event.set()

    def wait_for_write(self, work_dir, timeout=60):
        """Until the checkpoint's temporary file appears: the save first
        formats the config, seconds on a busy CPU."""
        end = time.time() + timeout
        while self.proc.poll() is None and time.time() < end:
            if any(f.endswith('.tmp') for f in os.listdir(work_dir)):
                return
            time.sleep(0.005)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait()

    def wait(self):
        code = self.proc.wait()
        try:
            self.reader.join()
        except RuntimeError:
            # A Ctrl+C came while the reader was starting: it never ran,
            # or runs until the pipe closes, a daemon thread that does not
            # keep the tool alive.
            pass
        return code


def left_in_save(work_dir, since):
    """Whether a save begun after ``since`` left its temporary file."""
    return any(
        f.endswith('.tmp') and osp.getmtime(osp.join(work_dir, f)) >= since
        for f in os.listdir(work_dir))


def last_checkpoint(work_dir):
    """(the file last_checkpoint names or None, whether it is complete)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None, True
    with open(path) as f:
        named = f.read().strip()
    return named, is_complete_checkpoint(named)


def weight_differences(a_path, b_path):
    """Max |a - b| per group of tensors (first two parts of the key)."""
    a = load_local_checkpoint(a_path, 'cpu')['state_dict']
    b = load_local_checkpoint(b_path, 'cpu')['state_dict']
    if set(a) != set(b):
        raise SystemExit(f'{a_path} and {b_path} hold different keys')
    groups = OrderedDict()
    for key in a:
        group = '.'.join(key.split('.')[:2])
        diff = (a[key].double() -
                b[key].double()).abs().max().item() if a[key].numel() else 0.0
        groups[group] = max(groups.get(group, 0.0), diff)
    return groups


def claim_root(root: str) -> None:
    """Make ``root`` this tool's folder: a new or empty one, or an earlier
    call's (nothing but :data:`OWN_ENTRIES`), whose runs are replaced."""
    if osp.isdir(root):
        others = sorted(set(os.listdir(root)) - OWN_ENTRIES)
        if others:
            raise UserError(
                f'{root} holds files this tool did not write ({others[0]}'
                f'{f" and {len(others) - 1} more" if len(others) > 1 else ""}'
                ') and its runs replace the folders in it: give an empty or '
                'new --root.')
    make_out_dir(root)


def read_reference(path: str, options: list):
    """The uninterrupted run an earlier call recorded with the same
    options, or None."""
    try:
        with open(path) as f:
            reference = json.load(f)
        if reference['options'] == options:
            return reference
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none, or not this tool's: run it again
    return None


def failed_run(log: str, code: int, what: str) -> UserError:
    """The line tools/train.py refused its input with (exit status 2), or
    where to read why the run failed."""
    if code == USER_ERROR_EXIT_CODE:
        with open(log) as f:
            said = [
                line[len('error: '):].strip() for line in f
                if line.startswith('error: ')
            ]
        if said:
            return UserError(said[-1])
    return UserError(f'{what} failed (exit status {code}): see {log}.')


def main(argv=None):
    args = parse_args(argv)
    runs = []  # the training processes started, to stop on Ctrl+C
    with cli_errors('the training it had started is stopped. Run the '
                    'command again to start over'):
        try:
            return run_benchmark(args, runs)
        except KeyboardInterrupt:
            # The trainings run in their own session (their loader workers
            # die with them), so the terminal's Ctrl+C does not reach them.
            for run in runs:
                if run.proc.poll() is None:
                    run.kill()
            raise


def run_benchmark(args, runs: list) -> int:
    root = osp.abspath(args.root)
    claim_root(root)
    make_toy_data(
        osp.join(root, 'data'),
        coco_train=args.coco_train,
        coco_val=1,
        videos=args.videos)
    write_toy_class_embeddings(osp.join(root, 'embd'))
    options = epoch_options(args.epochs) + [
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ] + toy_train_options(root) + args.cfg_options
    env = dict(
        os.environ,
        PYTHONPATH=REPO,
        PYTHONUNBUFFERED='1',  # log lines arrive when written: kill timing
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1')

    def start(work_dir, resume, log):
        return Training([
            sys.executable,
            osp.join(REPO, 'tools', 'train.py'),
            osp.join(REPO, 'configs', 'rap_sam', 'toy_rap_sam_train.py'),
            '--work-dir', work_dir
        ] + (['--resume'] if resume else []) + ['--cfg-options'] + options,
                        env, log, runs)

    final = f'epoch_{args.epochs}.pth'
    ref_dir = osp.join(root, 'uninterrupted')
    run_dir = osp.join(root, 'killed')
    ref_info = osp.join(root, 'uninterrupted.json')
    reference = None
    if args.keep_reference and osp.isfile(osp.join(ref_dir, final)):
        reference = read_reference(ref_info, options)
    for work_dir in (run_dir, ) if reference else (ref_dir, run_dir):
        try:
            if osp.lexists(work_dir):
                shutil.rmtree(work_dir)
            os.makedirs(work_dir)
        except OSError as err:
            raise output_error(work_dir, err) from err

    if reference is None:
        print(f'uninterrupted run ({args.epochs} epochs) ...', flush=True)
        ref_log = osp.join(root, 'ref.log')
        open(ref_log, 'w').close()
        ref = start(ref_dir, False, ref_log)
        code = ref.wait()
        if code != 0:
            raise failed_run(ref_log, code, 'The uninterrupted run')
        reference = dict(
            options=options,
            total=time.time() - ref.start,
            startup=ref.first_iter or 0.0)
        write_json(ref_info, reference)
    total, startup = reference['total'], reference['startup']
    epoch_time = (total - startup) / args.epochs
    print(
        f'uninterrupted run: {total:.0f} s: start-up {startup:.0f} s, '
        f'{epoch_time:.0f} s per epoch',
        flush=True)

    rng = random.Random(args.seed)
    log = osp.join(root, 'killed.log')
    open(log, 'w').close()  # the processes append to it
    failures, finished, mid_save = [], False, 0
    for i in range(args.kills):
        at_save = i % 2 == 1
        run = start(run_dir, i > 0, log)
        if at_save:
            # Until a save begins, or the output ends (a run that failed
            # or finished): the reader sets the event before it ends.
            while not run.save_event.wait(0.05) and run.reader.is_alive():
                pass
            run.wait_for_write(run_dir)
            delay = rng.uniform(0, args.save_window)
            what = f'{delay:.2f} s into a checkpoint write'
        else:
            delay = rng.uniform(0, startup + 1.5 * epoch_time)
            what = f'at {delay:.1f} s'
        if not at_save:
            try:
                run.proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(delay)
        code = run.kill() if run.proc.poll() is None else run.wait()
        named, complete = last_checkpoint(run_dir)
        state = (f'last_checkpoint -> {osp.basename(named)}'
                 if named else 'no checkpoint yet')
        if left_in_save(run_dir, run.start):
            state += ' (killed inside a save: a temporary file is left)'
            mid_save += 1
        if not complete:
            failures.append(f'kill {i + 1}: {named} is not complete')
            state += ' (INCOMPLETE)'
        print(
            f'kill {i + 1:2d}/{args.kills} {what}: '
            f'{"killed" if code == -signal.SIGKILL else f"exit {code}"}; '
            f'{state}',
            flush=True)
        if code == 0:
            finished = True
            break
        if code not in (0, -signal.SIGKILL):
            failures.append(f'kill {i + 1}: the run failed (exit {code}); '
                            f'see {log}')
            break
    if not finished and not failures:
        run = start(run_dir, True, log)
        code = run.wait()
        finished = code == 0
        if not finished:
            failures.append(f'the last resume failed (exit {code}); see '
                            f'{log}')
    with open(log) as f:
        resumes = f.read().count('resumed epoch')
    print(f'interrupted run finished: {finished} ({resumes} resumes; '
          f'{mid_save} kills inside a checkpoint save)')
    if finished:
        diffs = weight_differences(
            osp.join(ref_dir, final), osp.join(run_dir, final))
        width = max(len(g) for g in diffs)
        print(f'max |uninterrupted - killed| per group of {final}:')
        for group, diff in diffs.items():
            print(f'  {group:<{width}}  {diff:.3g}')
        worst = max(diffs.values())
        print(f'overall: {worst:.3g}' +
              (' (identical)' if worst == 0 else
               ' (with data loader workers, or --cfg-options that add random '
               'draws outside the main process, a resumed run draws other '
               'augmentations than the uninterrupted one)'))
    for failure in failures:
        print('FAIL:', failure)
    return 1 if failures or not finished else 0


if __name__ == '__main__':
    sys.exit(main())
