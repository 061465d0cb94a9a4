"""What the demo scripts share: the repository on sys.path, the common
arguments, and bad input ending the run with a message, not a traceback.

Only the standard library is imported at the top: a demo parses its
arguments before rap_sam imports torch and mmdet (seconds), so ``--help``
and a mistyped option answer at once."""
import argparse
import os.path as osp
import re
import runpy
import sys
from typing import List, Optional, Union

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

_ARG_TYPES = osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py')
# By its path: importing it would import rap_sam, torch and mmdet first.
_CLI = runpy.run_path(_ARG_TYPES)
add_trust_checkpoint = _CLI['add_trust_checkpoint']
positive_int = _CLI['positive_int']
# rap_sam.deploy.prepare.POSTS, written out: importing it imports torch.
POSTS = ('exact', 'half')
# The runtime precisions that run an int8 export folder
# (rap_sam.deploy.backends.reads_int8_folder), written out likewise.
INT8_PRECISIONS = ('int8', 'int8-bf16')
# A negative number, or a comma list starting with one ('-5,10').
_NEGATIVE_VALUES = re.compile(r'^-\d*\.?\d+(,[-+]?\d*\.?\d*)*$')


def guard_interrupts() -> None:
    """A Ctrl+C or SIGTERM while the demo starts (importing torch) prints
    one line and exits with status 130 or 143, as :func:`user_errors` does
    once it runs; see rap_sam/utils/interrupt_guard.py."""
    runpy.run_path(_ARG_TYPES, run_name='__main__')


def user_errors(interrupted: str = ''):
    """:func:`rap_sam.utils.user_errors.cli_errors`, imported when the
    demo's arguments are parsed."""
    from rap_sam.utils.user_errors import cli_errors
    return cli_errors(interrupted)


def base_parser(doc: str,
                inputs_help: Optional[str] = None,
                inputs_optional: bool = False,
                backends: bool = True,
                post: Union[bool, str] = False,
                export: bool = False) -> argparse.ArgumentParser:
    """Options every demo takes; with ``inputs_help``, also the positional
    INPUTS (which may be left out with ``inputs_optional``) and CONFIG;
    with ``backends``, the runtime options; with ``post``, ``--post`` (for
    demos that segment whole images: clicks, boxes and videos do not pass
    through it), a string ``post`` ending its help; with ``export`` (and
    ``backends``), ``--export DIR`` instead of CONFIG, the demo then calling
    :func:`check_export_args` on the parsed arguments."""
    parser = argparse.ArgumentParser(
        description=doc.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # argparse takes '-5,10' (a click left of the image) for an option and
    # answers "expected at least one argument"; as a value it reaches the
    # check that says the point is outside the image. Python 3.13's own
    # pattern already reads it so.
    parser._negative_number_matcher = _NEGATIVE_VALUES
    if inputs_help:
        parser.add_argument(
            'inputs', nargs='?' if inputs_optional else None, help=inputs_help)
        parser.add_argument(
            'config',
            nargs='?' if export else None,
            help='an eval config under configs/rap_sam' +
            (' (not with --export)' if export else ''))
    parser.add_argument(
        '--weights',
        help='checkpoint (rapsam_r50_12e.pth); '
        'without it the weights are random')
    parser.add_argument(
        '--device',
        default=None,
        help='cpu, cuda or cuda:N (default: GPU if any)')
    parser.add_argument(
        '--scale',
        type=int,
        nargs=2,
        metavar=('W', 'H'),
        default=None,
        help="resize images to fit W x H instead of the config's test "
        'scale (faster on CPU, coarser masks)')
    parser.add_argument(
        '--classes',
        default=None,
        help="your own vocabulary instead of the config's classes: a text "
        'file, one class a line, synonyms comma-separated (embedded once '
        'with CLIP and cached)')
    parser.add_argument(
        '--num-things',
        type=int,
        default=None,
        help='with --classes: the first N classes are things, the rest '
        'stuff (default: all things)')
    add_trust_checkpoint(parser)
    if backends:
        parser.add_argument(
            '--backend',
            choices=('torch', 'onnxruntime', 'openvino'),
            # None: check_export_args tells a left-out --backend from an
            # explicit torch, which an export folder cannot run on.
            default=None if export else 'torch',
            help='run on PyTorch, or export once (cached) and run on ONNX '
            'Runtime or OpenVINO (CPU); see docs/deploy.md' +
            (' (default: torch; onnxruntime with --export)' if export else ''))
        parser.add_argument(
            '--precision',
            # int8 comes from an export folder (calibrated beforehand).
            choices=('fp32', 'bf16') + (INT8_PRECISIONS if export else ()),
            default=None if export else 'fp32',
            help='bf16 is approximate and opt-in (torch autocast or '
            "OpenVINO's bf16; int8: tools/deploy/export.py" +
            (", run with --export; int8-bf16: an int8 folder on openvino "
             "with its float operations in bf16; default: fp32, or the "
             "export folder's)" if export else ')'))
        parser.add_argument(
            '--threads',
            type=positive_int,
            default=None,
            help='threads per graph for onnxruntime / openvino (PyTorch '
            'takes OMP_NUM_THREADS)')
        # check_export_args refuses --threads on torch, which ignored it.
        parser.runtime_threads = True
        if export:
            parser.add_argument(
                '--export',
                metavar='DIR',
                default=None,
                help='an export folder (tools/deploy/export.py: fp32, int8 '
                'or bf16) instead of a config and --weights; its classes and '
                'scale are fixed (export again to change them)')
    if post:
        parser.add_argument(
            '--post',
            choices=POSTS,
            default='exact',
            help="post-processing of whole images: 'half' is approximate and "
            'opt-in (the masks fused at half size: a 2-3x faster '
            'post-processing on a CPU, a mask edge moving by about a pixel), '
            'image models only; see docs/deploy.md' +
            (f'. {post}' if isinstance(post, str) else ''))
    if inputs_help:
        parser.add_argument(
            '--overwrite',
            action='store_true',
            help='replace results of an earlier run in --out-dir (without '
            'it the demo refuses to; inputs are never written over)')
    return parser


def _listed(names: List[str]) -> str:
    return names[0] if len(names) == 1 else \
        f'{", ".join(names[:-1])} and {names[-1]}'


def check_export_args(parser: argparse.ArgumentParser,
                      args,
                      config: str = 'CONFIG') -> None:
    """CONFIG or ``--export DIR``, and with ``--export`` none of the options
    an export folder fixes: a usage error otherwise, before the demo imports
    torch. Fills in the runtime ``--backend`` and ``--precision`` left
    out: torch and fp32 for CONFIG; onnxruntime and the folder's own
    precision (None) for ``--export``. ``config``: how the usage names the
    config (``--config`` where it is an option)."""
    if args.export is None:
        if args.config is None:
            parser.error('the following arguments are required: config '
                         '(or --export DIR, an export folder)')
        args.backend = args.backend or 'torch'
        args.precision = args.precision or 'fp32'
        if args.precision in INT8_PRECISIONS:
            parser.error(
                f'--precision {args.precision} runs an int8 export folder '
                '(calibrated on your images): make one with '
                'tools/deploy/export.py CONFIG --checkpoint CKPT --out DIR '
                '--precision int8 --calib DIR_OF_IMAGES, then give --export '
                'DIR instead of CONFIG')
        if args.backend == 'torch' and args.threads is not None and getattr(
                parser, 'runtime_threads', False):
            parser.error(
                f'--threads {args.threads} is for --backend onnxruntime or '
                'openvino; PyTorch takes its threads from OMP_NUM_THREADS '
                f'(OMP_NUM_THREADS={args.threads} python ...)')
        return
    if args.config is not None:
        parser.error(f'give {config} ({args.config}) or --export DIR '
                     f'({args.export}), not both')
    if args.backend == 'torch':
        parser.error('--export runs on onnxruntime or openvino: leave out '
                     '--backend torch')
    args.backend = args.backend or 'onnxruntime'
    fixed = [
        option for option, given in (
            ('--weights', args.weights is not None),
            ('--scale', args.scale is not None),
            ('--classes', args.classes is not None),
            ('--num-things', args.num_things is not None),
            ('--trust-checkpoint', args.trust_checkpoint),
        ) if given
    ]
    if fixed:
        parser.error('--export runs an export folder as it is: leave out '
                     f'{_listed(fixed)} (export again to change them)')
    if args.device not in (None, 'cpu'):
        parser.error(f'--export runs on the CPU ({args.backend}): leave out '
                     f'--device {args.device}')


def load_predictor(args, config: Optional[str] = None, **kwargs):
    """The :class:`~rap_sam.apis.RapSAMPredictor` the parsed arguments ask
    for (``config`` instead of ``args.config`` when given; the export
    folder of ``--export``); ``kwargs`` go to the predictor, a ``post``
    among them over ``--post``."""
    from rap_sam.apis import RapSAMPredictor
    from rap_sam.utils.checkpoint import trust_all_checkpoints
    if getattr(args, 'export', None):
        # check_export_args refused --classes and --num-things: the
        # vocabulary is the folder's.
        kwargs.pop('classes', None)
        kwargs.pop('num_things', None)
        if getattr(args, 'post', 'exact') != 'exact':
            kwargs.setdefault('post', args.post)
        return RapSAMPredictor.from_export(
            args.export,
            args.backend,
            args.precision,
            num_threads=args.threads,
            **kwargs)
    config = config or args.config
    if args.trust_checkpoint:
        trust_all_checkpoints()
    if getattr(args, 'backend', 'torch') != 'torch' or getattr(
            args, 'precision', 'fp32') != 'fp32':
        kwargs.update(
            backend=args.backend,
            precision=args.precision,
            num_threads=args.threads)
    # Without --post half the predictor keeps its own default; app.py's
    # video predictor asks for post='exact' whatever --post.
    if getattr(args, 'post', 'exact') != 'exact':
        kwargs.setdefault('post', args.post)
    return RapSAMPredictor(config, args.weights, args.device, args.scale,
                           **kwargs)


def predictor_kwargs(args) -> dict:
    """The predictor's vocabulary options from the parsed arguments; the
    class file is read here, so a bad one is reported before the model
    loads."""
    from rap_sam.apis import InputError
    from rap_sam.utils.text_classifier import check_num_things, read_class_file
    classes, num_things = args.classes, args.num_things
    if classes is None:
        if num_things is not None:
            # The predictor ignored it: the config's classes say which
            # are things.
            raise InputError(
                f'--num-things {num_things} goes with --classes FILE (the '
                'first N of its classes are things); without --classes the '
                "config's classes are used as they are: leave it out.")
    else:
        classes = read_class_file(classes)
        # Said before the model loads, with the option's name.
        check_num_things(num_things, classes, args.classes)
    return dict(classes=classes, num_things=num_things)


def score_threshold(text: str) -> float:
    """argparse type: a score between 0 and 1 (the API refused others only
    after the model loaded, naming its own parameter)."""
    try:
        value = float(text)
    except ValueError:
        value = float('nan')
    if not 0 <= value <= 1:  # nan too
        raise argparse.ArgumentTypeError(
            f'must be a number from 0 to 1, got {text!r}')
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f'must be a port from 0 (any free one) to 65535, got {text!r}')
    return value


def numbers(count: int, what: str):
    """An argparse ``type``: ``"x,y"``-style text -> ``count`` floats."""

    def parse(text: str):
        # Imported only when the option is given: parsing the others
        # stays free of torch.
        from rap_sam.apis import InputError
        from rap_sam.apis.inputs import parse_numbers
        try:
            return parse_numbers(text, count, what)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err))

    return parse
