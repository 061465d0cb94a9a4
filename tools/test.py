"""Evaluate a RAP-SAM checkpoint with a config's test loop.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch]

The checkpoint must fit the model exactly: every missing, unexpected or
wrongly shaped key is listed and the run stops before evaluating.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import rap_sam  # noqa: E402,F401  (registers modules and the loader)
from rap_sam.utils.checkpoint import (CheckpointMismatchError,
                                      UnsafeCheckpointError,
                                      load_model_weights,
                                      trust_all_checkpoints)
from rap_sam.utils.launcher import setup_cpu_distributed  # noqa: E402
from rap_sam.utils.runner_cli import (apply_overrides, load_config,
                                      parse_runner_args)


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
        '--show-dir',
        help='write visualised predictions under '
        'WORK_DIR/TIMESTAMP/SHOW_DIR')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load the checkpoint with weights_only=False (only for files '
        'from a source you trust)')
    return parse_runner_args(parser, argv,
                             'test_dataloader.dataset.data_root=/data/coco/')


def build_cfg(args) -> Config:
    cfg = load_config(args)
    if not osp.isfile(osp.expanduser(args.checkpoint)):
        raise SystemExit(f'Checkpoint file not found: {args.checkpoint}')
    setup_cpu_distributed(cfg, args.launcher)
    apply_overrides(cfg, args)
    # Weights come from the checkpoint, not from ImageNet init.
    cfg.model.backbone.init_cfg = None
    # Loaded strictly below, with a readable error, instead of the runner's
    # lenient load.
    cfg.load_from = None
    if args.show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise SystemExit('--show-dir needs a visualization hook in '
                             'default_hooks')
        hooks.visualization.draw = True
        hooks.visualization.test_out_dir = args.show_dir
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        trust_all_checkpoints()
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    try:
        load_model_weights(model, args.checkpoint)
    except (CheckpointMismatchError, UnsafeCheckpointError) as err:
        raise SystemExit(f'Cannot load {args.checkpoint}:\n{err}')
    if args.out:
        from mmdet.evaluation import DumpDetResults
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl or .pickle file')
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    runner.logger.info(f'Metrics are in {runner.log_dir}')
    return metrics


if __name__ == '__main__':
    main()
