"""Command-line handling shared by the tools: the options of tools/train.py
and tools/test.py, the two that build mmengine's Runner from a config, and
argparse types."""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

from .config_file import read_config


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]],
                      override_example: str) -> argparse.Namespace:
    """Add the options both tools end with (``--cfg-options``,
    ``--launcher``, ``--local_rank``) and parse ``argv``.

    ``override_example`` is a ``key=value`` shown in the help of
    ``--cfg-options``.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config settings, e.g. {override_example}')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    # torch.distributed.launch passes the rank as an option, torchrun in the
    # environment; mmengine reads only the environment.
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(args: argparse.Namespace) -> Config:
    """The config file ``args.config``, run by ``args.launcher``."""
    cfg = read_config(args.config)
    cfg.launcher = args.launcher
    return cfg


def apply_overrides(cfg: Config, args: argparse.Namespace) -> None:
    """Apply ``--cfg-options``, then choose the work dir: ``--work-dir``,
    else the config's, else ./work_dirs/CONFIG_NAME.

    Separate from :func:`load_config` so that a tool can adjust the config
    in between and the user's ``--cfg-options`` still have the last word.
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs',
        osp.splitext(osp.basename(args.config))[0])


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'expected a whole number >= 1, got {text!r}')
    return value
