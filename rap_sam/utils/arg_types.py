"""What every command-line tool runs first: the interrupt guard, and the
argparse types and options the tools share.

Only the standard library is imported here, as in interrupt_guard.py: a
tool parses its arguments before it imports torch and mmdet (seconds), so
it runs this file by its path rather than importing it, which would first
run the ``rap_sam`` package's ``__init__``. One line, before any other
import of the project::

    CLI = runpy.run_path(
        osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)

``run_name=__name__`` is ``'__main__'`` when the tool runs as a program:
then a Ctrl+C or a SIGTERM from here on is one line
(:mod:`~rap_sam.utils.interrupt_guard`); a test that imports the tool
installs nothing. ``CLI['positive_int']``, ``CLI['add_trust_checkpoint']``
and the rest are this file's functions.

Code that has imported ``rap_sam`` anyway takes the types from
:mod:`rap_sam.utils.runner_cli`, which re-exports them.
"""
import argparse
import importlib.util
import os
import os.path as osp
import runpy
import sys
from typing import Optional, Sequence

#: What every tool imports: a Python without them is not the project's.
NEEDED_PACKAGES = ('numpy', 'torch', 'mmengine', 'mmdet')
#: Set to the environment a tool started over in, so a broken one is said
#: instead of started again.
_STARTED_OVER = 'RAP_SAM_STARTED_OVER_IN'


def use_project_environment() -> None:
    """Start the tool over in the project's environment (``make env``'s
    ``.venv``) when the Python that runs it lacks the project's packages,
    as tools/dist_launch.sh picks ``.venv`` too: the reference's commands
    (``python demo/demo.py ...``, ``python tools/gen_cls.py ...``) then
    work as written in a clone where ``make demo`` or ``make test`` has
    run. Without such an environment, one line says what to do."""
    missing = [
        name for name in NEEDED_PACKAGES
        if importlib.util.find_spec(name) is None
    ]
    if not missing:
        return
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    venv = osp.join(repo, '.venv')
    python = (
        osp.join(venv, 'Scripts', 'python.exe')
        if os.name == 'nt' else osp.join(venv, 'bin', 'python'))
    lacking = ', '.join(missing)
    # The tool as the command named it (runpy has put this file's path in
    # sys.argv[0]); the interpreter's options are left behind (-S or -I
    # would hide .venv's packages again).
    tool = sys.orig_argv[len(sys.orig_argv) - len(sys.argv)]
    if os.environ.get(_STARTED_OVER) == venv:
        print(
            f'error: {python} lacks {lacking}: the environment is '
            f'incomplete; run `make env` in {repo} again.',
            file=sys.stderr)
        raise SystemExit(2)
    if not (osp.isfile(python) and osp.isfile(tool)):
        print(
            f'error: this Python ({sys.executable}) lacks {lacking}, which '
            f'rap_sam needs: run `make env` in {repo} (it builds .venv, '
            'which the tools then use), or install requirements.txt into '
            'this Python.',
            file=sys.stderr)
        raise SystemExit(2)
    os.environ[_STARTED_OVER] = venv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [python, tool] + sys.argv[1:])


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(
            f'expected a whole number >= {minimum}, got {text!r}')
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _whole_number(text, 0)


def add_trust_checkpoint(parser: argparse.ArgumentParser,
                         what: str = '--weights',
                         help: Optional[str] = None) -> None:
    """``--trust-checkpoint``: load the checkpoint ``what`` names even if
    rap_sam's allow-list refuses it; the tool calls
    :func:`rap_sam.utils.checkpoint.trust_all_checkpoints` when it is
    set. ``help`` replaces the usual text."""
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help=help or f'load {what} even if it holds objects outside the '
        'safe allow-list (unpickling can run code: only for files from a '
        'source you trust)')


#: rap_sam.deploy.quantize.INT8_WEIGHT_BITS, written out (that module
#: imports numpy and more; a test checks they agree).
INT8_WEIGHT_BITS = (8, 7)


def add_int8_weight_bits(parser: argparse.ArgumentParser) -> None:
    """``--int8-weight-bits``: the int8 weights' bits, as
    ``quantize_export(weight_bits=...)`` takes them."""
    parser.add_argument(
        '--int8-weight-bits',
        type=int,
        default=INT8_WEIGHT_BITS[0],
        choices=INT8_WEIGHT_BITS,
        help='int8: bits of the weights: 8 (default), or 7 for CPUs without '
        'VNNI (AVX2 only), where 8-bit weights saturate')


def parse_with_cfg_options(parser: argparse.ArgumentParser,
                           argv: Optional[Sequence[str]],
                           override_example: str) -> argparse.Namespace:
    """Add ``--cfg-options`` (mmengine's ``DictAction``, as the Runner and
    ``Config.merge_from_dict`` take it) and parse ``argv``; an item without
    ``=`` ends the tool with one line, ``error: --cfg-options takes
    key=value items, ...``, and status 2 (it was DictAction's ValueError
    traceback)."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config settings, e.g. {override_example}')
    try:
        return parser.parse_args(argv)
    except ValueError as err:  # DictAction on an item without =
        print(
            'error: --cfg-options takes key=value items, e.g. '
            f'{override_example} ({err}).',
            file=sys.stderr,
            flush=True)
        raise SystemExit(2)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]],
                      override_example: str) -> argparse.Namespace:
    """Add the options tools/train.py and tools/test.py end with
    (``--cfg-options``, ``--launcher``, ``--local_rank``) and parse
    ``argv``; ``override_example`` is a ``key=value`` shown in the help of
    ``--cfg-options``. An item without ``=`` ends the tool with one line,
    ``error: --cfg-options takes key=value items, ...``, and status 2 (what
    :func:`~rap_sam.utils.user_errors.cli_errors` prints for a user error),
    also before rap_sam is imported (mmengine's config module: no torch,
    under a second).
    """
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parse_with_cfg_options(parser, argv, override_example)
    # torch.distributed.launch passes the rank as an option, torchrun in the
    # environment; mmengine reads only the environment.
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


if __name__ != 'rap_sam.utils.arg_types':  # run by path, by a tool
    use_project_environment()

if __name__ == '__main__':
    # Run by path too, for the reason this file is.
    runpy.run_path(
        osp.join(osp.dirname(osp.abspath(__file__)), 'interrupt_guard.py'),
        run_name='__main__')
