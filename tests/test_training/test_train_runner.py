"""The toy recipe through tools/train.py's config and mmengine's Runner:
every source trains with finite losses, the loss falls, a NaN stops the
run before the weights change, and a checkpoint resumes and loads into
tools/test.py."""
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner, set_random_seed
from training_helpers import REPO, load_tool, toy_train_cfg

from rap_sam.engine import NonFiniteLossError


@pytest.fixture(scope='module')
def trained(toy_root, tmp_path_factory):
    """One epoch of the toy recipe on 96-px crops."""
    work_dir = tmp_path_factory.mktemp('train')
    runner = Runner.from_cfg(toy_train_cfg(toy_root, work_dir))
    runner.train()
    return runner, work_dir


def test_every_source_trains_with_finite_losses(trained):
    runner, work_dir = trained
    scalars = runner.message_hub.log_scalars
    losses = {k: v for k, v in scalars.items() if 'loss' in k}
    sources = {k.split('/')[1].split('.')[0] for k in losses if '.' in k}
    assert sources == {'coco', 'yt19', 'sam'}
    for key, history in losses.items():
        values = history.data[0]
        assert all(math.isfinite(v) for v in values), key
    assert 'train/sam.loss_iou' in losses
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def _batches(cfg):
    """One batch of each source from the toy recipe's loader."""
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches = {}
    for batch in loader:
        batches.setdefault(batch['data_samples'][0].data_tag, batch)
        if len(batches) == 3:
            return batches
    raise AssertionError(f'only sources {sorted(batches)} came out')


@pytest.mark.parametrize('seed', [0, 1])
def test_loss_falls_on_each_source(toy_root, tmp_path, seed):
    from mmdet.registry import MODELS
    cfg = toy_train_cfg(toy_root, tmp_path)
    set_random_seed(seed)  # the data pipelines draw from numpy / random
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True))
    for tag, batch in _batches(cfg).items():
        totals = []
        for _ in range(10):
            log_vars = model.train_step(batch, optim)
            assert all(math.isfinite(v.item()) for v in log_vars.values())
            totals.append(log_vars['loss'].item())
        # point sampling and prompt jitter make single steps noisy
        assert sum(totals[-3:]) < sum(totals[:3]), (tag, totals)


def test_nan_loss_stops_before_the_weights_change(toy_root, tmp_path,
                                                  monkeypatch):
    from rap_sam.models import RapSAMHead
    cfg = toy_train_cfg(toy_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()  # train() would do it after the snapshot
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    real = RapSAMHead.loss

    def poisoned(self, x, samples):
        losses = real(self, x, samples)
        losses['loss_mask'] = losses['loss_mask'] * float('nan')
        return losses

    monkeypatch.setattr(RapSAMHead, 'loss', poisoned)
    with pytest.raises(NonFiniteLossError, match=r'iteration 1, source'):
        runner.train()
    after = runner.model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before
        if 'num_batches_tracked' not in k and 'running' not in k)


def test_checkpoint_resumes_and_loads_into_test_tool(trained, toy_root):
    _, work_dir = trained
    cfg = toy_train_cfg(toy_root, work_dir, extra=['--resume'])
    cfg.train_cfg.max_epochs = 2
    runner = Runner.from_cfg(cfg)
    started = []

    class FirstIteration(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            started.append(runner.iter)

    runner.register_hook(FirstIteration())
    runner.train()
    # continued from the end of epoch 1, not from scratch
    per_epoch = len(runner.train_dataloader)
    assert started[0] == per_epoch and len(started) == per_epoch
    assert runner.iter == 2 * per_epoch and runner.epoch == 2
    checkpoint = osp.join(work_dir, 'epoch_2.pth')

    test = load_tool('test')
    for name, metric in (('coco', 'coco_panoptic/PQ'), ('prompt',
                                                        'coco_sam/mIoU')):
        options = [
            f'model.panoptic_head.ov_classifier_dir={toy_root}/embd',
            f'test_dataloader.dataset.data_root={toy_root}/data/coco/',
        ]
        if name == 'coco':
            options.append(f'test_evaluator.seg_prefix={toy_root}/data/coco/'
                           'annotations/panoptic_val2017/')
        metrics = test.main([
            osp.join(REPO, f'configs/rap_sam/toy_eval_{name}.py'), checkpoint,
            '--work-dir',
            str(work_dir / f'eval_{name}'), '--cfg-options', *options
        ])
        assert metric in metrics


def test_toy_epochs_option_moves_the_lr_step():
    """``tools/toy_train_eval.py --epochs N``: through mmengine's own
    ``--cfg-options`` parsing, the toy config trains N epochs with its lr
    step two epochs before the end and its checkpoint at the end."""
    import argparse

    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    options = load_tool('toy_train_eval').epoch_options(20)
    args = parser.parse_args(['--cfg-options'] + options)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'rap_sam', 'toy_rap_sam_train.py'))
    assert cfg.param_scheduler[1].milestones == [cfg.train_cfg.max_epochs - 2]
    cfg.merge_from_dict(args.cfg_options)
    assert cfg.train_cfg.max_epochs == 20
    step = cfg.param_scheduler[1]
    assert step.milestones == [18] and step.end == 20
    assert cfg.param_scheduler[0].end == 50  # the warm-up is untouched
    # A checkpoint every epoch (one kept): a killed run resumes from its
    # last epoch.
    assert cfg.default_hooks.checkpoint.interval == 1
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 1
