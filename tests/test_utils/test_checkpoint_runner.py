"""Checkpoints written by mmengine's own Runner load through the safe loader:
before the first iteration, mid-epoch, at the end of a run, and with every
kind of object the runner puts in ``meta`` and ``message_hub``."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS
from mmengine.runner import Runner, load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from rap_sam.utils.checkpoint import (SAFE_GLOBALS, TRUST_ENV,
                                      load_local_checkpoint,
                                      load_model_weights)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.bn(self.linear(torch.stack(inputs)))
        if mode == 'loss':
            return dict(loss=((out.sum(1) - torch.stack(labels))**2).mean())
        return list(out)


class ToyDataset(Dataset):
    # What mmdet datasets carry: class names and a palette of tuples.
    metainfo = dict(
        classes=('person', 'sky'),
        palette=[(220, 20, 60), (70, 130, 180)],
        data_tags=['toy'])

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(
            inputs=torch.tensor([i / 8, 1 - i / 8]),
            labels=torch.tensor(i / 8))


class ToyMetric(BaseMetric):
    """Returns a numpy scalar (which the CheckpointHook keeps as the best
    score) and a per-class array (which the message hub keeps as info)."""

    def process(self, data_batch, data_samples):
        self.results.extend(float(x.sum()) for x in data_samples)

    def compute_metrics(self, results):
        return dict(
            score=np.float64(np.mean(results)),
            per_class=np.array([0.5, 0.25]))


class EmptyScalarHook(Hook):
    """Registers a scalar that has not been logged yet, as mmengine's
    MessageHub does: an empty HistoryBuffer (pickled with ``bytes()``)."""

    def before_train(self, runner):
        hub = runner.message_hub
        hub._log_scalars['custom/not_logged_yet'] = HistoryBuffer()
        hub._resumed_keys['custom/not_logged_yet'] = True
        # The state before the first iteration, optimizer and all.
        runner.save_checkpoint(runner.work_dir, 'before_first_iter.pth')


DATASETS.register_module(module=ToyDataset, force=True)
METRICS.register_module(module=ToyMetric, force=True)
HOOKS.register_module(module=EmptyScalarHook, force=True)


def build_runner(work_dir, load_from=None):
    loader = dict(
        dataset=dict(type='ToyDataset'),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        num_workers=0)
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name='toy_checkpoints',
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=dict(type='ToyMetric', prefix='toy'),
        val_cfg=dict(),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            clip_grad=dict(max_norm=1.0)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
            dict(type='MultiStepLR', milestones=[1], by_epoch=True)
        ],
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                interval=3,
                by_epoch=False,
                max_keep_ckpts=10,
                save_best='toy/score',
                rule='greater')),
        custom_hooks=[dict(type='EMAHook'),
                      dict(type='EmptyScalarHook')],
        randomness=dict(seed=5),
        load_from=load_from,
        resume=load_from is not None,
        cfg=dict(model=dict(type='ToyModel')))


@pytest.fixture(scope='module')
def runner_checkpoints(tmp_path_factory):
    """Files saved by one short run: after building (before_run), before
    the first iteration, every 3 iterations (mid-epoch: an epoch is 4) and
    at the end (iteration 8), plus the best one."""
    work_dir = tmp_path_factory.mktemp('runner')
    runner = build_runner(work_dir)
    runner.call_hook('before_run')
    runner.save_checkpoint(
        str(work_dir),
        'after_build.pth',
        save_optimizer=False,
        save_param_scheduler=False,
        meta=dict(
            torch_version=torch.__version__,
            numpy_seed=np.int64(5),
            hist=np.arange(4, dtype=np.float32)))
    runner.train()
    names = [
        'after_build.pth', 'before_first_iter.pth', 'iter_3.pth', 'iter_6.pth',
        'iter_8.pth'
    ]
    paths = {name: osp.join(str(work_dir), name) for name in names}
    best = [
        n for n in runner.message_hub.runtime_info if n.startswith('best_ckpt')
    ]
    assert best, 'the CheckpointHook saved no best checkpoint'
    paths['best'] = runner.message_hub.get_info(best[0])
    for path in paths.values():
        assert osp.isfile(path), path
    return runner, paths


def unsafe_globals(path):
    return set(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def test_runner_writes_what_we_expect(runner_checkpoints):
    """The files really hold the objects this loader exists for, so the
    other tests check what they claim to."""
    _, paths = runner_checkpoints
    end = unsafe_globals(paths['iter_8.pth'])
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in end
    assert 'builtins.bytes' in end  # the empty HistoryBuffer
    assert any(name.endswith('multiarray.scalar') for name in end)
    # Nothing beyond what the allow-list names.
    allowed = {
        item[1] if isinstance(item, tuple) else
        f'{item.__module__}.{item.__qualname__}'
        for item in SAFE_GLOBALS
    }
    for path in paths.values():
        assert unsafe_globals(path) <= allowed, path


@pytest.mark.parametrize('name', [
    'after_build.pth', 'before_first_iter.pth', 'iter_3.pth', 'iter_6.pth',
    'iter_8.pth', 'best'
])
def test_runner_checkpoint_loads(runner_checkpoints, name, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    runner, paths = runner_checkpoints
    path = paths[name]
    reference = torch.load(path, weights_only=False)

    model = ToyModel()
    ckpt = load_checkpoint(model, path, map_location='cpu', strict=True)
    for key, value in reference['state_dict'].items():
        assert torch.equal(model.state_dict()[key], value), key

    model = ToyModel()
    ckpt2 = load_model_weights(model, path)
    for key, value in reference['state_dict'].items():
        assert torch.equal(model.state_dict()[key], value), key

    for loaded in (ckpt, ckpt2):
        meta = loaded['meta']
        assert meta['seed'] == 5
        assert meta['experiment_name'] == runner.experiment_name
        assert meta['dataset_meta'] == ToyDataset.metainfo
        assert meta['mmengine_version'].startswith('0.')
        assert len(meta['time']) == len('20261201_120000')
        assert 'ToyModel' in meta['cfg']
        assert loaded['message_hub']['runtime_info']['seed'] == 5


def test_meta_values_round_trip(runner_checkpoints):
    _, paths = runner_checkpoints
    first = load_local_checkpoint(paths['after_build.pth'])
    assert first['meta']['torch_version'] == torch.__version__
    assert first['meta']['numpy_seed'] == np.int64(5)
    assert np.array_equal(first['meta']['hist'], np.arange(4.))

    before = load_local_checkpoint(paths['before_first_iter.pth'])
    empty = before['message_hub']['log_scalars']['custom/not_logged_yet']
    assert isinstance(empty, HistoryBuffer)
    assert empty.data[0].shape == (0, )

    end = load_local_checkpoint(paths['iter_8.pth'])
    reference = torch.load(paths['iter_8.pth'], weights_only=False)
    hub, ref_hub = end['message_hub'], reference['message_hub']
    assert list(hub['log_scalars']) == list(ref_hub['log_scalars'])
    for key, buffer in ref_hub['log_scalars'].items():
        assert np.array_equal(hub['log_scalars'][key].data[0],
                              buffer.data[0]), key
    loss = hub['log_scalars']['train/loss']
    assert len(loss.data[0]) == 8 and loss.mean() == pytest.approx(
        ref_hub['log_scalars']['train/loss'].mean())
    info = hub['runtime_info']
    assert info['iter'] == 7 and info['max_iters'] == 8
    assert isinstance(info['best_score'], np.float64)
    assert np.array_equal(info['val/toy/per_class'], [0.5, 0.25])
    assert end['meta']['iter'] == 8
    assert [s['last_step'] for s in end['param_schedulers']] == \
        [s['last_step'] for s in reference['param_schedulers']]
    assert torch.equal(end['ema_state_dict']['steps'],
                       reference['ema_state_dict']['steps'])
    for state, ref in zip(end['optimizer']['state'].values(),
                          reference['optimizer']['state'].values()):
        assert torch.equal(state['exp_avg'], ref['exp_avg'])


def test_runner_resumes_from_mid_epoch(runner_checkpoints, tmp_path,
                                       monkeypatch):
    """mmengine's resume (``--resume``) reads the mid-epoch file through
    the safe loader and finishes the run."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    _, paths = runner_checkpoints
    runner = build_runner(tmp_path, load_from=paths['iter_6.pth'])
    runner.train()
    # Resumed at iteration 6; mmengine's epoch loop then runs the whole
    # second epoch (4 iterations) again.
    assert runner.iter == 6 + 4
    assert runner.epoch == 2
    # The loss history came from the file: 6 values, then 4 new ones.
    assert len(runner.message_hub.get_scalar('train/loss').data[0]) == 10
