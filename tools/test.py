"""Evaluate a RAP-SAM checkpoint with a config's test loop.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--overwrite] [--show-dir DIR] [--cfg-options k=v ...]
        [--launcher pytorch]

The checkpoint must fit the model exactly: every missing, unexpected or
wrongly shaped key is listed and the run stops before evaluating. A missing
file or a wrong option ends the run with one ``error: ...`` line (exit 2).

A ``test_dataloader.dataset.data_root`` given with ``--cfg-options`` also
moves the test evaluator's ``seg_prefix`` (COCO panoptic PNGs) unless that
is given too, and a ``val_dataloader`` one the val evaluator's
(:func:`rap_sam.utils.data_root.tie_seg_prefixes`). Result files the config
names at a fixed place (YouTube-VIS's ``outfile_prefix``) go to the run's
WORK_DIR/TIMESTAMP instead, so that a second run does not replace them; a
given ``test_evaluator.outfile_prefix`` is used as it is.

The work dir is created before any work (one line if it is a file or cannot
be created) and held by this run: two runs in one work dir would share one
WORK_DIR/TIMESTAMP when started in the same second, so a second evaluation,
or a training, into it stops with one line naming this one's PID.
"""
import argparse
import os
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
    parser = argparse.ArgumentParser(
        description='Evaluate RAP-SAM (COCO panoptic, YouTube-VIS, COCO-SAM)')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='where logs and metrics are written '
        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing --out file')
    parser.add_argument(
        '--show-dir',
        help='write visualised predictions under '
        'WORK_DIR/TIMESTAMP/SHOW_DIR (a folder outside it, absolute or with '
        '.., must be new or empty)')
    add_trust_checkpoint(
        parser,
        help='load the checkpoint with weights_only=False (only for files '
        'from a source you trust)')
    return parse_runner_args(parser, argv,
                             'test_dataloader.dataset.data_root=/data/coco/')


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from mmdet.visualization import DetLocalVisualizer
from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

sys.path.insert(0, REPO)
import rap_sam  # noqa: E402,F401  (registers modules and the loader)
from rap_sam.datasets.data_checks import first_few
from rap_sam.utils.checkpoint import (CheckpointNotFoundError,
                                      load_model_weights,
                                      trust_all_checkpoints)
from rap_sam.utils.data_root import option_given, tie_seg_prefixes
from rap_sam.utils.launcher import (check_launched, close_distributed,
                                    exit_closed_process, setup_cpu_distributed)
from rap_sam.utils.output_files import check_new_file
from rap_sam.utils.runner_cli import (LoopStarted, apply_overrides,
                                      check_counts, check_option_keys,
                                      claim_work_dir, is_eval_config,
                                      is_video_config, load_config,
                                      unexpected_options)
from rap_sam.utils.user_errors import UserError, cli_errors
from rap_sam.visualization import RapSAMLocalVisualizer


class EvalArgumentError(UserError, ValueError):
    """A file or option of tools/test.py that cannot be used."""


def _given(args, field: str) -> bool:
    """Whether --cfg-options set the test evaluator's ``field``."""
    return option_given(args.cfg_options or {}, 'test', field)


def _is_local(path) -> bool:
    return isinstance(path, str) and '://' not in path


def own_result_files(runner, args) -> None:
    """Write the result files that the config puts at a fixed place under
    this run's log dir (WORK_DIR/TIMESTAMP), so that no earlier run's are
    replaced; a prefix given with --cfg-options is kept."""
    if _given(args, 'outfile_prefix'):
        return
    for metric in runner.test_evaluator.metrics:
        prefix = getattr(metric, 'outfile_prefix', None)
        # A prefix in a temporary folder of the metric's own (mmdet's when
        # the config gives none) is deleted with it: nothing to keep.
        if not isinstance(prefix, str) or not _is_local(prefix) or \
                getattr(metric, 'tmp_dir', None) is not None:
            continue
        metric.outfile_prefix = osp.join(runner.log_dir, osp.basename(prefix))
        if getattr(metric, 'seg_out_dir', None) == f'{prefix}.panoptic':
            # CocoPanopticMetric's PNGs, named from the prefix at its start.
            metric.seg_out_dir = f'{metric.outfile_prefix}.panoptic'
        runner.logger.info('Result files: '
                           f'{metric.outfile_prefix}.* (the config\'s '
                           f'outfile_prefix {prefix} is shared by all runs)')


def check_out(args) -> None:
    """``--out`` can be written at the end without losing a file: checked
    before the evaluation (it failed at its end, or replaced what was
    there, the evaluated checkpoint included)."""
    out = args.out
    if not out.endswith(('.pkl', '.pickle')):
        raise EvalArgumentError(
            f'--out must name a .pkl or .pickle file, not {out}')
    if osp.realpath(out) == osp.realpath(osp.expanduser(args.checkpoint)):
        raise EvalArgumentError(
            f'--out {out} is the checkpoint being evaluated: name another '
            'file for the predictions.')
    check_new_file(out, args.overwrite, kind='.pkl')


def check_show_dir(show_dir: str, work_dir: str) -> None:
    """A --show-dir outside this run's WORK_DIR/TIMESTAMP (an absolute
    path, or one climbing out with ``..``) must not hold files: the hook
    draws each image under the image's own name, replacing a file of that
    name without a word (the dataset's own images, for a --show-dir that
    is their folder)."""
    # TIMESTAMP is not known yet; a path leaving its folder does not
    # depend on it.
    inside = osp.join(osp.abspath(work_dir), 'TIMESTAMP')
    target = osp.normpath(osp.join(inside, show_dir))
    if target == inside or target.startswith(inside + os.sep):
        return  # a folder of this run's, new each run
    if osp.exists(target) and not osp.isdir(target):
        raise EvalArgumentError(
            f'--show-dir {show_dir} is a file: give a folder for the '
            'drawings.')
    held = sorted(os.listdir(target)) if osp.isdir(target) else []
    if held:
        raise EvalArgumentError(
            f'--show-dir {show_dir} already holds files ({first_few(held, 3)})'
            ': the drawings, named as the images, would replace files of the '
            'same names; give a new or empty folder, or a relative name '
            '(drawn under WORK_DIR/TIMESTAMP/, new each run).')


def build_cfg(args) -> Config:
    cfg = load_config(args)
    if not osp.isfile(osp.expanduser(args.checkpoint)):
        raise CheckpointNotFoundError(
            f'Checkpoint file not found: {args.checkpoint} (give the path '
            'of a .pth file, e.g. the released rapsam_r50_12e.pth)')
    if not is_eval_config(cfg):
        raise EvalArgumentError(
            f'{args.config} is not an evaluation config (no test_dataloader '
            'or test_evaluator): give one of configs/rap_sam/eval_*.py.')
    if args.out:
        check_out(args)
    elif args.overwrite:
        raise EvalArgumentError('--overwrite goes with --out FILE.pkl.')
    # The sections only: an evaluator takes options its config may leave
    # out (test_evaluator.reference_averaging.num_processes=2).
    args.kind_changes = check_option_keys(cfg, args.cfg_options or {},
                                          EvalArgumentError, 1)
    # The model's parts too (a misspelt model.panoptc_head.x was a keyword
    # MaskFormer does not take: a TypeError), as the export tool checks them.
    check_option_keys(
        cfg, {
            key: value
            for key, value in (args.cfg_options or {}).items()
            if key.startswith('model.')
        }, EvalArgumentError, 2)
    check_launched(args.launcher, 'tools/dist_test.sh CONFIG CHECKPOINT N',
                   EvalArgumentError)
    setup_cpu_distributed(cfg, args.launcher)
    apply_overrides(cfg, args)
    check_counts(cfg, {
        'test_dataloader.batch_size': 1,
        'test_dataloader.num_workers': 0
    }, EvalArgumentError)
    tie_seg_prefixes(cfg, args.cfg_options, check=('test', ))
    # Weights come from the checkpoint, not from ImageNet init.
    cfg.model.backbone.init_cfg = None
    # Loaded strictly below, with a readable error, instead of the runner's
    # lenient load.
    cfg.load_from = None
    if args.show_dir:
        if is_video_config(cfg):
            raise EvalArgumentError(
                f'--show-dir draws image configs only: {args.config} '
                "evaluates videos, which mmdet's DetVisualizationHook "
                'cannot draw; leave it out (demo/video_demo.py draws a '
                "video's tracks).")
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise EvalArgumentError(
                f'--show-dir needs a visualization hook in {args.config}\'s '
                'default_hooks (mmdet\'s DetVisualizationHook)')
        check_show_dir(args.show_dir, cfg.work_dir)
        hooks.visualization.draw = True
        hooks.visualization.test_out_dir = args.show_dir
        if cfg.get('visualizer', {}).get('type') in (DetLocalVisualizer,
                                                     'DetLocalVisualizer'):
            # Its subclass: display names, and images without segments.
            # (By name: a class in a config that the Runner prints fails.)
            cfg.visualizer.type = 'mmdet.' + RapSAMLocalVisualizer.__name__
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        trust_all_checkpoints()
    cfg = build_cfg(args)
    # Runner.test builds its data loader and evaluator before its loop: an
    # option of another kind is named for a failure until then only.
    loop = LoopStarted()
    with claim_work_dir(cfg, args.launcher, 'evaluation'), \
            unexpected_options(args.cfg_options, args.kind_changes, loop):
        runner = Runner.from_cfg(cfg)
        runner.register_hook(loop)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        load_model_weights(model, args.checkpoint)
        own_result_files(runner, args)
        if args.out:
            from rap_sam.evaluation.metrics import SafeDumpDetResults
            runner.test_evaluator.metrics.append(
                SafeDumpDetResults(out_file_path=args.out))
        metrics = runner.test()
        close_distributed()
    runner.logger.info(f'Metrics are in {runner.log_dir}')
    return metrics


if __name__ == '__main__':
    with cli_errors():
        main()
    exit_closed_process()
