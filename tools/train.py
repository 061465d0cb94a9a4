"""Train RAP-SAM with a config's train loop.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--amp] [--trust-checkpoint] [--cfg-options k=v ...]
        [--launcher pytorch]

Several GPUs or nodes: tools/dist_train.sh. ``--resume`` alone continues
from the checkpoint the work dir's ``last_checkpoint`` names, or, when that
file is missing or truncated, from the newest complete checkpoint
(:class:`~rap_sam.engine.AtomicCheckpointHook`); with a path, from that file
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
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import Runner

sys.path.insert(0, REPO)
import rap_sam  # noqa: E402,F401  (registers modules and the loader)
from rap_sam.engine import is_complete_checkpoint  # noqa: E402
from rap_sam.utils.checkpoint import trust_all_checkpoints  # noqa: E402
from rap_sam.utils.data_root import loop_runs, tie_seg_prefixes
from rap_sam.utils.launcher import close_distributed, setup_cpu_distributed
from rap_sam.utils.pretrained import fetch_pretrained  # noqa: E402
from rap_sam.utils.runner_cli import (apply_overrides, claim_work_dir,
                                      load_config)
from rap_sam.utils.user_errors import UserError, cli_errors  # noqa: E402


class TrainArgumentError(UserError, ValueError):
    """A config, checkpoint or option given to tools/train.py is wrong."""


def build_cfg(args) -> Config:
    cfg = load_config(args)  # a missing or broken file: ConfigFileError
    _check_option_keys(cfg, args.cfg_options or {})
    try:
        apply_overrides(cfg, args)
    except (KeyError, TypeError, ValueError, AttributeError,
            IndexError) as err:
        raise TrainArgumentError(
            f'--cfg-options {" ".join(_option_items(args))} do not fit '
            f'{args.config}: {type(err).__name__}: {err}') from err
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
    if cfg.get('load_from'):
        # Every weight comes from that checkpoint: the ImageNet init would
        # only be downloaded and replaced. (--resume alone may find no
        # checkpoint and start afresh: it keeps the init.)
        cfg.model.backbone.init_cfg = None
    return cfg


def _check_option_keys(cfg: Config, options: dict) -> None:
    """Refuse an option whose parent key the config lacks: mmengine would
    add it, and a misspelt key would change nothing, silently. New leaf
    keys (``optim_wrapper.loss_scale=dynamic``) stay allowed."""
    for key in options:
        node, parts = cfg, key.split('.')
        for depth, part in enumerate(parts[:-1], 1):
            is_list = isinstance(node, (list, tuple))
            if is_list and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, (dict, Config)) and part in node:
                node = node[part]
            else:
                raise TrainArgumentError(
                    f'--cfg-options {key}: the config has no '
                    f"'{'.'.join(parts[:depth])}'; check the spelling "
                    f"against {cfg.filename or 'the config'}.")


def _option_items(args) -> list:
    return [f'{k}={v}' for k, v in (args.cfg_options or {}).items()]


def _one_line(err: UserError) -> UserError:
    """A user error raised in a data loader worker comes back with the
    worker's traceback in its message; keep the original message."""
    text = str(err)
    if '\nOriginal Traceback' not in text:
        return err
    last = text.rstrip().splitlines()[-1]
    return TrainArgumentError(last.split(': ', 1)[-1])


def main(argv=None):
    with cli_errors():
        args = parse_args(argv)
        if args.trust_checkpoint:
            trust_all_checkpoints()
        cfg = build_cfg(args)
        with claim_work_dir(cfg, args.launcher, 'training'):
            fetch_pretrained(cfg)
            runner = Runner.from_cfg(cfg)
            try:
                runner.train()
            except UserError as err:
                raise _one_line(err) from err
            close_distributed()
        return runner


if __name__ == '__main__':
    main()
