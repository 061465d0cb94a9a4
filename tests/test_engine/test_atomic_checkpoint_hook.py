"""A kill at any step of a checkpoint save leaves a complete checkpoint that
``last_checkpoint`` names, and the run resumes to the same weights."""
import os
import os.path as osp
import random
import uuid

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from rap_sam.engine import AtomicCheckpointHook, checkpoint_files


class _Linear(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            # Random as the real losses' point sampling: a resumed run
            # repeats these draws only with the random states restored.
            noise = torch.rand(1) + np.random.rand() + random.random()
            target = torch.stack(labels) + 0.1 * noise
            return dict(loss=((out - target)**2).mean())
        return out


class _Data(torch.utils.data.Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        x = torch.tensor([idx, 1.0]) / 8
        return dict(inputs=x, labels=x[:1] * 3 - 1)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


def _runner(work_dir, max_epochs, resume=False):
    torch.manual_seed(0)  # the model is built before the runner seeds
    return Runner(
        model=_Linear(),
        work_dir=str(work_dir),
        experiment_name=f'atomic_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(
            checkpoint=dict(
                type=AtomicCheckpointHook, interval=1, max_keep_ckpts=1)),
        resume=resume,
        randomness=dict(seed=0),
        default_scope='mmengine')


def _weights(runner):
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def _last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    runner = _runner(work_dir, 2)
    runner.train()
    return _weights(runner), work_dir


def test_saves_keep_one_checkpoint_and_point_at_it(uninterrupted):
    _, work_dir = uninterrupted
    files = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
    assert files == ['epoch_2.pth']
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]
    assert _last_checkpoint(work_dir) == osp.join(work_dir, 'epoch_2.pth')


def _write_half(monkeypatch):
    """Die in the middle of writing the file."""
    import mmengine.runner.runner as runner_module
    real = runner_module.save_checkpoint

    def save(checkpoint, filename, **kwargs):
        real(checkpoint, filename, **kwargs)
        with open(filename, 'rb+') as f:
            f.truncate(os.path.getsize(filename) // 2)
        raise Killed()

    monkeypatch.setattr(runner_module, 'save_checkpoint', save)


def _instead_of(step):
    """Die where ``step`` would run."""

    def kill(*args, **kwargs):
        raise Killed()

    return lambda monkeypatch: monkeypatch.setattr(checkpoint_files, step, kill
                                                   )


def _after(step):
    """Let ``step`` run, then die."""

    def patch(monkeypatch):
        real = getattr(checkpoint_files, step)

        def run_then_kill(*args, **kwargs):
            real(*args, **kwargs)
            raise Killed()

        monkeypatch.setattr(checkpoint_files, step, run_then_kill)

    return patch


# Where the save of epoch 2 dies, and the epoch last_checkpoint then names.
CRASHES = {
    'writing the checkpoint': (_write_half, 1),
    'before the rename': (_instead_of('commit_file'), 1),
    'after the rename': (_after('commit_file'), 1),
    'before last_checkpoint': (_instead_of('write_text_atomic'), 1),
    'after last_checkpoint': (_after('write_text_atomic'), 2),
}


class _CountIters(Hook):

    def __init__(self):
        self.iters = 0

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.iters += 1


def _resume_to_the_end(work_dir, expected, iters):
    """Resume for 2 epochs: ``iters`` iterations run, the weights are the
    uninterrupted run's."""
    resumed = _runner(work_dir, 2, resume=True)
    counter = _CountIters()
    resumed.register_hook(counter)
    resumed.train()
    assert resumed.epoch == 2 and counter.iters == iters
    after = _weights(resumed)
    for key, value in expected.items():
        assert torch.allclose(after[key], value, atol=1e-6), key


@pytest.mark.parametrize('moment', list(CRASHES))
def test_kill_during_a_save_loses_nothing(moment, uninterrupted, tmp_path,
                                          monkeypatch):
    expected, _ = uninterrupted
    _runner(tmp_path, 1).train()
    assert osp.isfile(tmp_path / 'epoch_1.pth')

    crash, named_epoch = CRASHES[moment]
    crash(monkeypatch)
    with pytest.raises(Killed):
        _runner(tmp_path, 2, resume=True).train()
    monkeypatch.undo()

    named = _last_checkpoint(tmp_path)
    assert named == osp.join(tmp_path, f'epoch_{named_epoch}.pth')
    checkpoint = torch.load(named, weights_only=False)
    assert checkpoint['meta']['epoch'] == named_epoch

    per_epoch = len(_Data()) // 2
    _resume_to_the_end(tmp_path, expected, per_epoch * (2 - named_epoch))
    # the retired checkpoint and the temporary files are gone
    assert sorted(
        f for f in os.listdir(tmp_path)
        if f.endswith(('.pth', '.tmp'))) == ['epoch_2.pth']


def test_resume_skips_a_truncated_checkpoint(uninterrupted, tmp_path):
    """A run saved by mmengine's own hook and killed in a save: the newest
    file is truncated and last_checkpoint names it."""
    expected, _ = uninterrupted
    _runner(tmp_path, 1).train()
    good = tmp_path / 'epoch_1.pth'
    bad = tmp_path / 'epoch_2.pth'
    bad.write_bytes(good.read_bytes()[:1000])
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    assert not checkpoint_files.is_complete_checkpoint(str(bad))

    _resume_to_the_end(tmp_path, expected, len(_Data()) // 2)
    assert _last_checkpoint(tmp_path) == str(bad)
    assert checkpoint_files.is_complete_checkpoint(str(bad))


def test_resume_without_any_complete_checkpoint_starts_over(
        uninterrupted, tmp_path):
    """mmengine's hook with max_keep_ckpts=1, killed while writing epoch 2:
    epoch 1 deleted, epoch 2 truncated; the run starts over instead of
    failing on the file last_checkpoint names."""
    expected, work_dir = uninterrupted
    bad = tmp_path / 'epoch_2.pth'
    bad.write_bytes((work_dir / 'epoch_2.pth').read_bytes()[:1000])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    _resume_to_the_end(tmp_path, expected, len(_Data()))
