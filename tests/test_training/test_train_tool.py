"""tools/train.py as a user runs it: mistakes end with one line
``error: ...`` and exit status 2, never a traceback."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, assert_ran, assert_user_error, load_tool, run_script

TOY = 'configs/rap_sam/toy_rap_sam_train.py'


@pytest.fixture(scope='module')
def notes(tmp_path_factory):
    """A text file named like a checkpoint."""
    path = tmp_path_factory.mktemp('ckpts') / 'notes.pth'
    path.write_text('not a checkpoint\n')
    return path


# One process each costs seconds of imports: one case per kind of mistake.
@pytest.mark.parametrize(
    'case, args, message',
    [
        ('missing config', ['no/such_config.py'],
         'error: Config file not found: no/such_config.py'),
        # --trust-checkpoint is accepted (argparse would stop at it)
        ('missing resume file', [
            TOY, '--trust-checkpoint', '--resume', 'no/such.pth'
        ], 'error: Checkpoint file not found: no/such.pth'),
        ('text resume file', [TOY, '--resume', '{notes}'],
         'error: {notes} is truncated or not a checkpoint'),
        ('option without =', [TOY, '--cfg-options', 'train_cfg.max_epochs'
                              ], 'error: --cfg-options takes key=value items'),
        ('misspelt option', [TOY, '--cfg-options', 'trian_cfg.max_epochs=2'],
         "error: --cfg-options trian_cfg.max_epochs: the config has no "
         "'trian_cfg'"),
        # An evaluation config: mmengine's "_train_loop should not be None".
        ('not a training config', ['configs/rap_sam/toy_eval_coco.py'],
         'error: configs/rap_sam/toy_eval_coco.py is not a training config'),
        # Trained nothing with exit status 0.
        ('no epochs', [TOY, '--cfg-options', 'train_cfg.max_epochs=0'],
         'error: train_cfg.max_epochs must be a whole number >= 1, got 0'),
        # range() arg 3 must not be zero, deep in the sampler.
        ('a word for a count', [
            TOY, '--cfg-options', 'train_dataloader.batch_size=abc'
        ], "error: train_dataloader.batch_size must be a whole number >= 1, "
         "got 'abc'"),
    ])
def test_user_errors_are_one_line(case, args, message, notes, tmp_path):
    args = [a.format(notes=notes) for a in args]
    result = run_script(
        'tools/train.py', *args, '--work-dir', tmp_path / 'work', timeout=300)
    assert assert_user_error(result).startswith(message.format(notes=notes))
    # nothing was trained or written
    assert not osp.exists(tmp_path / 'work')


@pytest.mark.parametrize(
    'option, message',
    [
        # TypeError: can't multiply sequence by non-int of type 'float', in
        # mmengine's optimizer constructor.
        ('optim_wrapper.optimizer.lr=abc',
         'error: --cfg-options optim_wrapper.optimizer.lr=abc: the config '
         'has a number here (0.0003). Building the run failed with '
         "TypeError: can't multiply sequence"),
        # TypeError: 'int' object is not iterable, in the scheduler.
        ('param_scheduler.1.milestones=16',
         'error: --cfg-options param_scheduler.1.milestones=16: the config '
         'has a list here ([16]; a list is given as key=[a,b]). Building the '
         'run failed with TypeError'),
    ])
def test_an_option_of_another_kind_is_named(option, message, toy_root,
                                            tmp_path):
    toy = load_tool('tools/toy_train_eval.py')
    options = toy.toy_train_options(str(toy_root))
    result = run_script(
        'tools/train.py',
        TOY,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *options,
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        option,
        timeout=300)
    assert assert_user_error(result).startswith(message)
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))


# A user's recipe with a val loop: the toy recipe on COCO panoptic alone
# (so that the model's classes are the val set's), validated as
# configs/rap_sam/toy_eval_coco.py evaluates.
VAL_RECIPE = '''from mmengine.config import read_base
from mmengine.runner import ValLoop

with read_base():
    from .toy_rap_sam_train import *  # noqa: F401,F403
    from .toy_eval_coco import val_dataloader, val_evaluator  # noqa: F401

coco_classes = dict(num_things_classes=80, num_stuff_classes=53)
model.panoptic_head.update(
    ov_classifier_name='toy_CocoPanopticOVDataset',
    loss_cls=dict(class_weight=[1.0] * 133 + [0.1]),
    **coco_classes)
model.panoptic_fusion_head.update(**coco_classes)
train_dataloader.dataset.update(data_tags=('coco', ), datasets=[coco])
val_cfg = dict(type=ValLoop)
'''


@pytest.fixture(scope='module')
def val_recipe(tmp_path_factory):
    """The configs folder copied (the recipe imports its neighbours) with
    the val recipe beside the toy one."""
    configs = tmp_path_factory.mktemp('recipe') / 'configs'
    shutil.copytree(osp.join(REPO, 'configs'), configs)
    path = configs / 'rap_sam' / 'toy_train_val.py'
    path.write_text(VAL_RECIPE)
    return str(path)


def _toy_options(root):
    return [
        f'model.panoptic_head.ov_classifier_dir={root}/embd',
        f'train_dataloader.dataset.datasets.0.data_root={root}/data/coco/',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1'
    ]


def test_val_loop_reads_the_moved_data_roots_pngs(val_recipe, toy_root,
                                                  tmp_path):
    """--cfg-options val_dataloader.dataset.data_root=DIR/ moves the val
    evaluator's seg_prefix along (logged): the epoch's validation reads
    DIR's panoptic PNGs, not the config's root's (absent here)."""
    coco = f'{toy_root}/data/coco/'
    result = run_script(
        'tools/train.py',
        val_recipe,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *_toy_options(toy_root),
        f'val_dataloader.dataset.data_root={coco}',
        timeout=900)
    stdout = assert_ran(result)
    assert (f'val_evaluator.seg_prefix={coco}annotations/panoptic_val2017/ '
            '(the dataset\'s data_root + data_prefix.seg)') in stdout
    assert re.search(r'Epoch\(val\) \[1\]\[\d+/\d+\].*coco_panoptic/PQ: ',
                     stdout)


def test_a_missing_val_seg_prefix_is_one_line_before_training(
        val_recipe, toy_root, tmp_path):
    """A val_evaluator.seg_prefix given (it wins over the data root) that
    is not a folder: said before the epoch, not when the validation reads
    the PNGs."""
    coco = f'{toy_root}/data/coco/'
    absent = f'{tmp_path}/pngs/'
    result = run_script(
        'tools/train.py',
        val_recipe,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *_toy_options(toy_root),
        f'val_dataloader.dataset.data_root={coco}',
        f'val_evaluator.seg_prefix={absent}',
        timeout=300)
    assert assert_user_error(result) == (
        f'error: val_evaluator.seg_prefix {absent} is not a folder (the '
        'panoptic PNGs of the val annotations); pass --cfg-options '
        'val_evaluator.seg_prefix=DIR/, e.g. '
        f'{coco}annotations/panoptic_val2017/')
    assert not osp.exists(tmp_path / 'work')


# A process that takes the work dir argv[1] for a run of kind argv[2] as the
# tools do, says so, and sleeps.
HOLDER = '''import sys, time
from rap_sam.utils.work_dir_lock import lock_work_dir
lock = lock_work_dir(sys.argv[1], sys.argv[2])
print('locked', flush=True)
time.sleep(600)
'''


def _hold(work_dir, kind='training'):
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLDER,
         str(work_dir), kind],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True)
    assert proc.stdout.readline() == 'locked\n'
    return proc


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    found = {}
    for d, _, files in os.walk(folder):
        for name in files:
            path = osp.join(d, name)
            with open(path, 'rb') as f:
                found[osp.relpath(path, folder)] = f.read()
    return found


def test_a_work_dir_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / 'f'
    path.write_text('x\n')
    result = run_script('tools/train.py', TOY, '--work-dir', path, timeout=300)
    assert assert_user_error(result) == (
        f'error: The work dir {path} is a file: give --work-dir a folder (it '
        'is created if missing), or move the file away.')
    assert path.read_text() == 'x\n'


def test_a_work_dir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / 'f').write_text('x\n')
    result = run_script(
        'tools/train.py',
        TOY,
        '--work-dir',
        tmp_path / 'f' / 'work',
        timeout=300)
    assert assert_user_error(result) == (
        f'error: Cannot create the work dir {tmp_path}/f/work: '
        f'{tmp_path}/f is a file; choose another --work-dir.')


def test_a_second_training_into_a_held_work_dir_is_refused(tmp_path):
    """Another run holds the work dir: this one ends with one line naming
    it and writes nothing; once the holder is killed (SIGKILL, no cleanup),
    a training goes past the lock (its log folder appears)."""
    work = tmp_path / 'work'
    work.mkdir()
    holder = _hold(work)
    try:
        before = _snapshot(work)
        result = run_script(
            'tools/train.py', TOY, '--work-dir', work, timeout=300)
        assert assert_user_error(result) == (
            f'error: {work} is in use by another training (PID '
            f'{holder.pid}): wait for it or choose another --work-dir.')
        assert _snapshot(work) == before
    finally:
        holder.kill()
        holder.wait()
    # Class embeddings that are not there (the toy recipe's own may be,
    # after a toy run in this clone): the run stops at them, after the
    # Runner made its log folder.
    result = run_script(
        'tools/train.py',
        TOY,
        '--work-dir',
        work,
        '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={tmp_path}/no_embd',
        timeout=300)
    assert_user_error(result, 'Class-embedding file not found')
    logs = glob.glob(str(work / '*' / '*.log'))
    assert len(logs) == 1


def test_an_earlier_runs_checkpoints_are_not_replaced(tmp_path):
    """Without --resume a second run into the same work dir overwrote the
    first's epoch_N.pth and last_checkpoint."""
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_2.pth').write_bytes(b'the first run')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    line = assert_user_error(
        run_script('tools/train.py', TOY, '--work-dir', work, timeout=300))
    assert line == (f'error: {work} holds checkpoints of an earlier run '
                    '(epoch_2.pth, last_checkpoint), which this one would '
                    'replace: pass --resume to continue it, or choose another '
                    '--work-dir.')
    assert (work / 'epoch_2.pth').read_bytes() == b'the first run'
    assert sorted(os.listdir(work)) == ['epoch_2.pth', 'last_checkpoint']


def test_resume_with_no_checkpoint_says_it_starts_from_the_beginning(
        toy_root, tmp_path):
    """--resume (continue from the work dir's newest checkpoint) on a work
    dir without one trained from scratch without a word."""
    work = tmp_path / 'work'
    toy = load_tool('tools/toy_train_eval.py')

    def train(epochs):
        return assert_ran(
            run_script(
                'tools/train.py',
                TOY,
                '--work-dir',
                work,
                '--resume',
                '--cfg-options',
                *toy.toy_train_options(str(toy_root)),
                'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False',
                f'train_cfg.max_epochs={epochs}',
                env=dict(OMP_NUM_THREADS=1),
                timeout=600))

    warning = (f'WARNING - --resume: {work} holds no checkpoint to continue '
               'from; training starts from the beginning.')
    stdout = train(1)
    assert stdout.count(warning) == 1, stdout[-4000:]
    # Said before the first iteration, not after the run.
    assert stdout.index(warning) < stdout.index('Epoch(train) [1]')
    assert (work / 'epoch_1.pth').is_file()
    # With a checkpoint there it continues, and says nothing of the kind.
    stdout = train(2)
    assert 'holds no checkpoint' not in stdout
    assert 'Epoch(train) [1]' not in stdout
    assert 'Epoch(train) [2]' in stdout
    # last_checkpoint naming a lost file: the run goes on from the newest
    # complete checkpoint and says so, once (the check before the run and
    # the checkpoint hook both look for it; mmengine's logger drops a
    # repeated warning).
    lost = work / 'epoch_9.pth'
    (work / 'last_checkpoint').write_text(str(lost))
    stdout = train(3)
    newest = work / 'epoch_2.pth'
    warning = (f'WARNING - {work}/last_checkpoint names {lost}, which does '
               f'not exist; resuming from {newest}, the newest complete '
               'checkpoint.')
    assert stdout.count(warning) == 1, stdout[-4000:]
    assert 'Epoch(train) [2]' not in stdout
    assert 'Epoch(train) [3]' in stdout


def _resume_state(root, **changes):
    """A training state of the toy model as mmengine saves one (weights,
    meta, message hub, optimizer), with ``changes`` to its keys."""
    import torch
    from helpers import toy_checkpoint
    model = toy_checkpoint(str(root), 'rap_sam/toy_rap_sam_train.py')
    state = dict(
        meta=dict(epoch=1, iter=10),
        message_hub={},
        optimizer={},
        state_dict=model.state_dict())
    state.update(changes)
    return state, torch


@pytest.mark.parametrize('case', ['weights only', 'other model', 'finished'])
def test_resume_from_a_checkpoint_that_cannot_continue(case, tmp_path):
    """Another model's optimizer state crashed the process at the first
    step (heap corruption), a weights-only file raised a KeyError, and a
    finished run trained nothing with exit status 0."""
    state, torch = _resume_state(tmp_path)
    if case == 'weights only':
        state = dict(state_dict=state['state_dict'])
    elif case == 'other model':
        weights = state['state_dict']
        key = 'panoptic_head.kernels.weight'
        weights[key] = weights[key][:-10]
    else:
        state['meta']['epoch'] = 4
    path = tmp_path / 'state.pth'
    torch.save(state, path)
    line = assert_user_error(
        run_script(
            'tools/train.py',
            TOY,
            '--work-dir',
            tmp_path / 'work',
            '--resume',
            path,
            '--cfg-options',
            f'model.panoptic_head.ov_classifier_dir={tmp_path}/embd',
            'train_cfg.max_epochs=2',
            timeout=300))
    expected = {
        'weights only':
        f'error: {path} holds weights only, not a training state (no meta, '
        'message_hub, optimizer): to start a training from them, pass '
        f'--cfg-options load_from={path} instead of --resume.',
        'other model':
        f'error: {path} does not fit RapSAM: 1 shape mismatches '
        '(panoptic_head.kernels.weight: checkpoint (20, 64) vs model (30, '
        '64))',
        'finished':
        f'error: {path} is at epoch 4 and train_cfg.max_epochs is 2: '
        'nothing left to train; raise max_epochs (with --cfg-options) to '
        'train further.',
    }[case]
    assert line.startswith(expected), line


# A word where the toy recipe has a number (10), which mmengine takes: the
# LogProcessor averages over a count of iterations, 'epoch' or 'global'.
WORD_FOR_A_NUMBER = 'log_processor.window_size=epoch'


def _train_in_process(toy_root, tmp_path):
    toy = load_tool('tools/toy_train_eval.py')
    return load_tool('tools/train.py').main([
        TOY, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *toy.toy_train_options(str(toy_root)),
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', WORD_FOR_A_NUMBER
    ])


def test_a_training_steps_error_is_not_blamed_on_an_option(
        toy_root, tmp_path, monkeypatch):
    """An option of another kind is named when building the run fails
    (lr=abc above); a TypeError after the first iteration, a bug of the
    step, keeps its own traceback."""
    from mmengine.runner.loops import EpochBasedTrainLoop
    run_iter, done = EpochBasedTrainLoop.run_iter, []

    def failing(self, idx, data_batch):
        run_iter(self, idx, data_batch)
        done.append(idx)
        raise TypeError('a bug in a training step')

    monkeypatch.setattr(EpochBasedTrainLoop, 'run_iter', failing)
    with pytest.raises(TypeError, match='^a bug in a training step$'):
        _train_in_process(toy_root, tmp_path)
    assert done == [0]


def test_building_inside_train_names_the_option(toy_root, tmp_path,
                                                monkeypatch, capsys):
    """Runner.train builds the parameter schedulers (and the optimizer)
    itself: a failure there is still said with the option."""
    from mmengine.runner import Runner

    def build_param_scheduler(self, scheduler):
        raise TypeError("'int' object is not iterable")

    monkeypatch.setattr(Runner, 'build_param_scheduler', build_param_scheduler)
    with pytest.raises(SystemExit) as info:
        _train_in_process(toy_root, tmp_path)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'error: --cfg-options {WORD_FOR_A_NUMBER}: the config has a number '
        "here (10). Building the run failed with TypeError: 'int' object is "
        'not iterable')


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_stop_on_damaged_data_with_its_line(toy_root, tmp_path):
    """tools/dist_train.sh on 2 CPU processes: the process that draws the
    damaged images says so in one line; the other, waiting for it in a
    collective, printed gloo's `Connection closed by peer` traceback, and
    the launcher named it as failed too."""
    coco = tmp_path / 'coco'
    shutil.copytree(f'{toy_root}/data/coco', coco)
    for image in glob.glob(str(coco / 'train2017' / '*.jpg')):
        with open(image, 'r+b') as f:
            f.truncate(100)
    toy = load_tool('tools/toy_train_eval.py')
    result = run_script(
        'tools/dist_train.sh',
        TOY,
        2,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *toy.toy_train_options(str(toy_root)),
        f'train_dataloader.dataset.datasets.0.data_root={coco}/',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        # the first damaged sample stops the run
        'train_dataloader.dataset.min_bad_samples=1',
        env=dict(PORT=_free_port(), OMP_NUM_THREADS=1, MKL_NUM_THREADS=1),
        timeout=300)
    assert result.returncode == 2, result.stderr[-4000:]
    assert 'Traceback' not in result.stderr, result.stderr[-4000:]
    *found, summary = [
        line for line in result.stderr.splitlines()
        if line.startswith('error: ')
    ]
    # Each process may draw a damaged image before the other stops it.
    assert found and len(found) <= 2, result.stderr[-4000:]
    for line in found:
        assert line.startswith('error: coco: ') and f'{coco}/train2017/' in \
            line, line
    # It names the processes that printed them, and no other.
    train_py = re.escape(osp.join(REPO, 'tools', 'train.py'))
    named = re.fullmatch(
        rf'error: process (0|1|0, 1) of {train_py} failed \(exit status '
        r'(2|2, 2)\); its messages are above\.', summary)
    assert named and len(named[1].split(', ')) == len(found), summary


def test_the_resume_check_maps_the_checkpoint_instead_of_reading_it(
        tmp_path, monkeypatch):
    """mmengine reads the checkpoint to resume from it: the check before
    reads only its index (a 12-epoch training state is hundreds of MB)."""
    from types import SimpleNamespace

    import torch
    from mmengine.config import Config
    train = load_tool('tools/train.py')
    model = torch.nn.Linear(2, 3)
    path = tmp_path / 'epoch_1.pth'
    torch.save(
        dict(
            meta=dict(epoch=1),
            message_hub={},
            optimizer={},
            state_dict=model.state_dict()), path)
    mapped = []

    def spy(*args, **kwargs):
        checkpoint = real(*args, **kwargs)
        with open('/proc/self/maps') as maps:
            mapped.append(any(str(path) in line for line in maps))
        return checkpoint

    real = train.load_local_checkpoint
    monkeypatch.setattr(train, 'load_local_checkpoint', spy)
    cfg = Config(
        dict(resume=True, load_from=str(path), train_cfg=dict(max_epochs=2)))
    train.check_resume(SimpleNamespace(model=model), cfg)
    assert mapped == [True]
    # The same check still refuses a finished run, read from the map.
    cfg.train_cfg.max_epochs = 1
    with pytest.raises(train.TrainArgumentError, match='nothing left'):
        train.check_resume(SimpleNamespace(model=model), cfg)
