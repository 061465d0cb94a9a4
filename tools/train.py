"""Train RAP-SAM with a config's train loop.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--amp] [--trust-checkpoint] [--cfg-options k=v ...]
        [--launcher pytorch]

Several GPUs or nodes: tools/dist_train.sh. ``--resume`` alone continues
from the checkpoint the work dir's ``last_checkpoint`` names, or, when that
file is missing or truncated, from the newest complete checkpoint
(:class:`~rap_sam.engine.AtomicCheckpointHook`), or, with none there, from
the beginning, which a warning says; with a path, from that file
(weights, optimizer, schedulers and iteration). Checkpoints load back under
torch >= 2.6 through rap_sam's weights-only loader. A
``val_dataloader.dataset.data_root`` given with ``--cfg-options`` (a recipe
with a val loop) also moves the val evaluator's ``seg_prefix``, as
tools/test.py does for the test one. Mistakes in the command line end with a
one-line ``error: ...`` and exit status 2.

The work dir is created before any work (one line if it is a file or cannot
be created) and held by this run: a second run into it, a training or a
tools/test.py evaluation, stops with one line naming this one's PID. A
killed run leaves no lock behind (:mod:`rap_sam.utils.work_dir_lock`).
"""
import argparse
import logging
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
parse_runner_args = CLI['parse_runner_args']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train RAP-SAM')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints are written '
        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='resume from CHECKPOINT, or from the newest checkpoint of the '
        'work dir when no path is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (AmpOptimWrapper, dynamic loss scale)')
    add_trust_checkpoint(
        parser,
        help='load the --resume checkpoint with weights_only=False (only '
        'for files from a source you trust)')
    return parse_runner_args(parser, argv, 'train_dataloader.batch_size=4')


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import Runner

sys.path.insert(0, REPO)
import rap_sam  # noqa: E402,F401  (registers modules and the loader)
from rap_sam.engine import is_complete_checkpoint  # noqa: E402
from rap_sam.engine.checkpoint_files import find_resumable_checkpoint
from rap_sam.utils.checkpoint import (check_state_dict, load_local_checkpoint,
                                      state_dict_from_checkpoint,
                                      trust_all_checkpoints)
from rap_sam.utils.data_root import loop_runs, tie_seg_prefixes
from rap_sam.utils.launcher import (check_launched, close_distributed,
                                    exit_closed_process, setup_cpu_distributed)
from rap_sam.utils.pretrained import fetch_pretrained  # noqa: E402
from rap_sam.utils.runner_cli import (LoopStarted, apply_overrides,
                                      check_counts, check_option_keys,
                                      claim_work_dir, earlier_checkpoints,
                                      load_config, unexpected_options)
from rap_sam.utils.user_errors import UserError, cli_errors  # noqa: E402


class TrainArgumentError(UserError, ValueError):
    """A config, checkpoint or option given to tools/train.py is wrong."""


def build_cfg(args) -> Config:
    cfg = load_config(args)  # a missing or broken file: ConfigFileError
    if not cfg.get('train_dataloader') or not cfg.get('train_cfg'):
        raise TrainArgumentError(
            f'{args.config} is not a training config (no train_dataloader '
            'or train_cfg): give a training recipe, e.g. '
            'configs/rap_sam/rap_sam_r50_12e_adaptor.py.')
    args.kind_changes = check_option_keys(cfg, args.cfg_options or {},
                                          TrainArgumentError)
    check_launched(args.launcher, 'tools/dist_train.sh CONFIG N',
                   TrainArgumentError)
    try:
        apply_overrides(cfg, args)
    except (KeyError, TypeError, ValueError, AttributeError,
            IndexError) as err:
        raise TrainArgumentError(
            f'--cfg-options {" ".join(_option_items(args))} do not fit '
            f'{args.config}: {type(err).__name__}: {err}') from err
    check_counts(cfg, TRAIN_COUNTS, TrainArgumentError)
    # A recipe with a val loop validates on the PNGs of its val data root.
    tie_seg_prefixes(
        cfg,
        args.cfg_options,
        check=('val', ) if loop_runs(cfg, 'val') else ())
    if not torch.cuda.is_available():
        # SyncBN needs GPUs; CPU processes talk through gloo, set up before
        # mmengine's init_dist (which calls torch.cuda.set_device).
        cfg.pop('sync_bn', None)
        setup_cpu_distributed(cfg, args.launcher)
    if args.amp:
        if not torch.cuda.is_available():
            raise TrainArgumentError(
                '--amp needs a GPU (mmengine trains mixed precision on CUDA '
                'devices only); run without --amp.')
        cfg.optim_wrapper.type = AmpOptimWrapper
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not osp.isfile(args.resume):
            raise TrainArgumentError(
                f'Checkpoint file not found: {args.resume} (--resume alone '
                'continues from the newest checkpoint of the work dir).')
        if not is_complete_checkpoint(args.resume):
            raise TrainArgumentError(
                f'{args.resume} is truncated or not a checkpoint; pass '
                'another file, or --resume alone to continue from the newest '
                'complete checkpoint of the work dir.')
        cfg.resume, cfg.load_from = True, args.resume
    earlier = [] if args.resume else earlier_checkpoints(cfg.work_dir)
    if earlier:
        raise TrainArgumentError(
            f'{cfg.work_dir} holds checkpoints of an earlier run '
            f'({", ".join(earlier)}), which this one would replace: pass '
            '--resume to continue it, or choose another --work-dir.')
    if cfg.get('load_from'):
        # Every weight comes from that checkpoint: the ImageNet init would
        # only be downloaded and replaced. (--resume alone may find no
        # checkpoint and start afresh: it keeps the init.)
        cfg.model.backbone.init_cfg = None
    return cfg


#: Counts a config may set (and --cfg-options change): the least each may
#: be.
TRAIN_COUNTS = {
    'train_cfg.max_epochs': 1,
    'train_cfg.max_iters': 1,
    'train_cfg.val_interval': 1,
    'train_dataloader.batch_size': 1,
    'train_dataloader.num_workers': 0,
    'randomness.seed': 0,
}


def check_resume(runner: Runner, cfg: Config) -> None:
    """The checkpoint the run resumes from holds a training state that fits
    the model and has epochs left to train: another model's optimizer
    state crashed the process (heap corruption) at the first step, a
    weights-only file raised a KeyError, and a finished one trained
    nothing with exit status 0. A work dir with nothing to resume from is
    said in a warning: mmengine starts afresh without a word."""
    if not cfg.get('resume'):
        return
    path = cfg.get('load_from') or find_resumable_checkpoint(cfg.work_dir)
    if not path:
        # A last_checkpoint naming a lost file was warned of already.
        if not osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
            print_log(
                f'--resume: {cfg.work_dir} holds no checkpoint to continue '
                'from; training starts from the beginning.',
                logger='current',
                level=logging.WARNING)
        return
    if '://' in path:
        return  # remote storage (mmengine's to read)
    # Mapped, not read: mmengine loads the file again to resume from it.
    checkpoint = load_local_checkpoint(path, map_location='cpu', mmap=True)
    state = [
        k for k in ('meta', 'message_hub', 'optimizer') if k not in checkpoint
    ] if isinstance(checkpoint, dict) else ['meta']
    if state:
        raise TrainArgumentError(
            f'{path} holds weights only, not a training state (no '
            f'{", ".join(state)}): to start a training from them, pass '
            f'--cfg-options load_from={path} instead of --resume.')
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    check_state_dict(model, state_dict_from_checkpoint(checkpoint, path), path)
    epoch = checkpoint['meta'].get('epoch')
    max_epochs = cfg.train_cfg.get('max_epochs')
    if isinstance(epoch, int) and isinstance(max_epochs, int) and \
            epoch >= max_epochs:
        raise TrainArgumentError(
            f'{path} is at epoch {epoch} and train_cfg.max_epochs is '
            f'{max_epochs}: nothing left to train; raise max_epochs (with '
            '--cfg-options) to train further.')


def _option_items(args) -> list:
    return [f'{k}={v}' for k, v in (args.cfg_options or {}).items()]


def main(argv=None):
    with cli_errors('the checkpoints saved so far are kept: continue with '
                    '--resume'):
        args = parse_args(argv)
        if args.trust_checkpoint:
            trust_all_checkpoints()
        cfg = build_cfg(args)
        with claim_work_dir(cfg, args.launcher, 'training'):
            fetch_pretrained(cfg)
            # Runner.train builds the optimizer, the schedulers and the
            # data loaders before its loop: an option of another kind is
            # named for a failure until then only.
            loop = LoopStarted()
            with unexpected_options(args.cfg_options, args.kind_changes, loop):
                runner = Runner.from_cfg(cfg)
                runner.register_hook(loop)
                check_resume(runner, cfg)
                runner.train()
            close_distributed()
        return runner


if __name__ == '__main__':
    main()
    exit_closed_process()
