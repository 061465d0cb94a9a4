"""Train RAP-SAM with a config's train loop.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--amp] [--cfg-options k=v ...] [--launcher pytorch]

Several GPUs or nodes: tools/dist_train.sh. ``--resume`` alone continues
from the newest checkpoint of the work dir; with a path, from that file
(weights, optimizer, schedulers and iteration). Checkpoints load back under
torch >= 2.6 through rap_sam's weights-only loader.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import rap_sam  # noqa: E402,F401  (registers modules and the loader)
from rap_sam.utils.runner_cli import (apply_overrides, load_config,
                                      parse_runner_args)


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
    return parse_runner_args(parser, argv, 'train_dataloader.batch_size=4')


def build_cfg(args) -> Config:
    cfg = load_config(args)
    apply_overrides(cfg, args)
    if not torch.cuda.is_available():
        # NCCL and SyncBN need GPUs; CPU processes talk through gloo.
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg['backend'] = 'gloo'
        cfg.pop('sync_bn', None)
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU (mmengine trains mixed '
                             'precision on CUDA devices only).')
        cfg.optim_wrapper.type = AmpOptimWrapper
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not osp.isfile(args.resume):
            raise SystemExit(f'Checkpoint file not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    runner = Runner.from_cfg(build_cfg(args))
    runner.train()
    return runner


if __name__ == '__main__':
    main()
