"""Command-line handling shared by the tools: the options of tools/train.py
and tools/test.py, the two that build mmengine's Runner from a config, and
argparse types."""
import argparse
import contextlib
import os
import os.path as osp
from typing import Dict, Iterator, Optional

from mmengine.config import Config
from mmengine.hooks import Hook

# Defined torch-free there: tools parse their arguments before torch.
from .arg_types import non_negative_int  # noqa: F401
from .arg_types import parse_runner_args  # noqa: F401
from .arg_types import positive_int  # noqa: F401
from .config_file import read_config
from .user_errors import UserError
from .work_dir_lock import holding_work_dir

# The variable each launcher gives a process its global rank in.
_RANK_VARIABLES = {
    'pytorch': 'RANK',
    'slurm': 'SLURM_PROCID',
    'mpi': 'OMPI_COMM_WORLD_RANK',
}


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


def check_option_keys(cfg: Config,
                      options: dict,
                      error: type = UserError,
                      levels: Optional[int] = None) -> Dict[str, str]:
    """Refuse an option whose parent key the config lacks: mmengine would
    add it, and a misspelt key would change nothing, silently. New leaf
    keys (``optim_wrapper.loss_scale=dynamic``) stay allowed; with
    ``levels``, only the first ``levels`` parents are checked (deeper ones
    may be keyword arguments a config leaves at their defaults, such as an
    evaluator's ``reference_averaging``).

    Returns:
        dict: The options that change the kind of the config's value (a
        word or a list for a number, a number for a list), each with what
        the config has: allowed (``loss_scale=dynamic`` for a number, a
        ``scale`` for a pair can be right), and named by
        :func:`unexpected_options` when the run then fails building.
    """
    changes = {}
    for key, value in options.items():
        node, parts = cfg, key.split('.')
        for depth, part in enumerate(parts[:-1][:levels], 1):
            node = _child(node, part)
            if node is _MISSING:
                raise error(f'--cfg-options {key}: the config has no '
                            f"'{'.'.join(parts[:depth])}'; check the spelling "
                            f"against {cfg.filename or 'the config'}.")
        if levels is not None and len(parts) - 1 > levels:
            continue
        problem = _kind_change(_child(node, parts[-1]), value)
        if problem:
            changes[key] = problem
    return changes


def is_eval_config(cfg: Config) -> bool:
    """Whether ``cfg`` has a test loop (``test_dataloader`` and
    ``test_evaluator``), as tools/test.py and the evaluations need."""
    return bool(cfg.get('test_dataloader') and cfg.get('test_evaluator'))


def is_video_config(cfg: Config) -> bool:
    """Whether ``cfg`` builds ``RapSAMVideo`` (its model type given as the
    class or its registry name)."""
    model_type = (cfg.get('model') or {}).get('type')
    return getattr(model_type, '__name__', model_type) == 'RapSAMVideo'


def merge_model_options(cfg: Config,
                        options: Optional[dict],
                        error: type = UserError) -> None:
    """Merge ``--cfg-options`` into ``cfg`` for a tool that builds the
    model from it, after :func:`check_option_keys` on the section and its
    part: a misspelt one (``model.nek``) would be added and change nothing,
    while deeper keys may be keyword arguments the config leaves out
    (``model.backbone.model_cfg``). A misspelt last key is a keyword the
    class does not take: build the model under :func:`unexpected_options`.
    """
    if options:
        check_option_keys(cfg, options, error, 2)
        cfg.merge_from_dict(options)


_MISSING = object()


def _child(node, part: str):
    """``node[part]`` (a list index for a list), or ``_MISSING``."""
    if isinstance(node, (list, tuple)):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
    elif isinstance(node, (dict, Config)) and part in node:
        return node[part]
    return _MISSING


def _kind_change(old, new) -> Optional[str]:
    """What the config had, where ``new`` replaces a number by a word or a
    list, or a list by a number; None for other replacements."""
    number = (int, float)
    if isinstance(old, bool) or isinstance(new, bool) or new is None:
        return None
    if isinstance(old, number) and not isinstance(new, number):
        return f'the config has a number here ({old!r})'
    if isinstance(old, (list, tuple)) and not isinstance(new, (list, tuple)):
        return (f'the config has a list here ({list(old)!r}; a list is '
                'given as key=[a,b])')
    return None


def check_counts(cfg: Config, keys: dict, error: type = UserError) -> None:
    """Each of ``keys`` (a dotted config key: the least it may be) that
    the config has must be a whole number at least that: a count of 0 or
    a word given with --cfg-options failed deep in mmengine or torch."""
    for key, least in keys.items():
        node = cfg
        for part in key.split('.'):
            node = node.get(part) if isinstance(node, (dict, Config)) \
                else None
        if node is None:
            continue
        if isinstance(node, bool) or not isinstance(node, int) or \
                node < least:
            raise error(f'{key} must be a whole number >= {least}, got '
                        f'{node!r}: fix it in the config or --cfg-options.')


class LoopStarted(Hook):
    """Registered on a Runner, notes when its loop starts: by then
    ``Runner.train`` has built the data loaders, the optimizer wrapper and
    the parameter schedulers and restored a resumed state
    (``Runner.test`` its loop, data loader and evaluator). An error after
    that comes from training or testing, not from building the run (see
    :func:`unexpected_options`)."""

    # Before the other hooks' before_train: theirs run in the loop.
    priority = 'HIGHEST'

    def __init__(self):
        self.started = False

    def before_train(self, runner) -> None:
        self.started = True

    def before_test(self, runner) -> None:
        self.started = True


@contextlib.contextmanager
def unexpected_options(options: Optional[dict],
                       kind_changes: Optional[Dict[str, str]] = None,
                       loop: Optional[LoopStarted] = None) -> Iterator[None]:
    """A class built with a keyword it does not take because of a misspelt
    last key of --cfg-options (``train_cfg.max_epoch=1``: a TypeError from
    mmengine's builders, for the checkpoint hook only at the first save)
    becomes one line naming the option; so does a TypeError or ValueError
    while options in ``kind_changes`` (:func:`check_option_keys`) are
    given (``lr=abc``: can't multiply sequence by non-int of type 'float',
    in mmengine's optimizer constructor; ``milestones=16``: 'int' object is
    not iterable), raised while the run is built: until ``loop``, given and
    registered on the runner, sees the loop start. A TypeError of a
    training step would otherwise be blamed on such an option, which may
    well be right (``loss_scale=dynamic``). Other errors pass."""
    try:
        yield
    except (TypeError, ValueError) as err:
        text = str(err)
        building = loop is None or not loop.started
        if kind_changes and building and not isinstance(err, UserError):
            named = '; '.join(f'--cfg-options {key}={options[key]}: {why}'
                              for key, why in kind_changes.items())
            raise UserError(f'{named}. Building the run failed with '
                            f'{type(err).__name__}: {text}') from err
        if not isinstance(err, TypeError) or \
                'unexpected keyword argument' not in text:
            raise
        for key, value in (options or {}).items():
            if f"'{key.split('.')[-1]}'" in text:
                raise UserError(f'--cfg-options {key}={value}: {text}; check '
                                'the spelling of its last key.') from err
        raise


def earlier_checkpoints(work_dir: str) -> list:
    """The checkpoints (and ``last_checkpoint``) a training left in
    ``work_dir``, sorted: what another training there would replace."""
    if not osp.isdir(work_dir):
        return []
    return sorted(
        name for name in os.listdir(work_dir)
        if name.endswith('.pth') or name == 'last_checkpoint')


def launched_rank(launcher: str) -> int:
    """This process's global rank under ``--launcher``, from the launcher's
    environment (the process group may not exist yet): 0 for ``none``."""
    variable = _RANK_VARIABLES.get(launcher)
    try:
        return int(os.environ.get(variable, 0)) if variable else 0
    except ValueError:
        return 0


@contextlib.contextmanager
def claim_work_dir(cfg: Config, launcher: str, kind: str) -> Iterator[None]:
    """Create ``cfg.work_dir`` and hold it for the body: a work dir that is
    a file, cannot be created or is held by another run (another training
    or evaluation) is one line before the Runner writes anything.

    Every process of a launched run creates the folder (each would fail
    alike); only rank 0 takes the lock, so that the ranks of one run never
    refuse each other. ``kind`` (``'training'``, ``'evaluation'``) names
    this run to a run refused meanwhile.
    """
    with holding_work_dir(
            cfg.work_dir, kind, lock=launched_rank(launcher) == 0):
        yield
