"""How much the approximate deploy modes (int8, bf16) change the outputs.

    python tools/analysis/deploy_accuracy.py CONFIG --checkpoint CKPT
        --calib DIR_OF_IMAGES [--calibration minmax|percentile]
        [--modes onnxruntime:int8 openvino:int8 openvino:bf16 torch:bf16]
        [--photos IMG ...] [--eval-configs CFG ...] [--scale W H]
        [--work-dir DIR] [--trust-checkpoint] [--cfg-options k=v ...]

A report over :func:`rap_sam.deploy.accuracy.compare_modes`, which does the
measuring. Exports the model (fp32, at ``--scale`` or the config's test
scale), makes the int8 export from it (calibrated on ``--calib``), then,
for each mode ``BACKEND:PRECISION`` against the same backend in fp32:

- on photos (default: demo/demo.jpg and scikit-image's astronaut, coffee,
  chelsea, rocket): thing instances kept (matched one to
  one by mask IoU >= 0.5, same label), the IoU of matched masks, panoptic
  pixels of the same class, and 4 x 4 grid clicks' mask IoU;
- on each ``--eval-configs`` test set (e.g. the toy model's PQ and click
  mIoU configs): the metrics in fp32 and in the mode, and their drop.

``--cfg-options`` apply to CONFIG, and to each eval config those whose
key it has. Prints the tables (markdown) and writes them with the raw
figures to ``WORK_DIR/deploy_accuracy.json``.
"""
import argparse
import json
import os
import os.path as osp
import runpy
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
positive_int = CLI['positive_int']

#: rap_sam.deploy's defaults and choices, written out: importing it would
#: import torch before the arguments are parsed (a test checks they agree).
DEFAULT_MODES = ('onnxruntime:int8', 'openvino:int8', 'openvino:bf16')
CALIBRATIONS = ('minmax', 'percentile')
DEFAULT_CALIBRATION = 'minmax'
INT8_MODULES = ('backbone', 'neck', 'panoptic_head')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the model config')
    parser.add_argument(
        '--checkpoint',
        required=True,
        help='the weights (every variant must load the same ones)')
    add_trust_checkpoint(
        parser,
        help='load the checkpoint with weights_only=False (only for files '
        'from a source you trust)')
    parser.add_argument(
        '--calib', help='a folder of calibration images (int8 modes)')
    parser.add_argument(
        '--modes',
        nargs='+',
        default=list(DEFAULT_MODES),
        help='BACKEND:PRECISION, each compared with BACKEND:fp32 '
        '(backends torch, onnxruntime, openvino; precisions bf16, int8, '
        'int8-bf16 on openvino)')
    parser.add_argument(
        '--photos',
        nargs='*',
        help='image files (default: demo/demo.jpg and scikit-image photos)')
    parser.add_argument(
        '--eval-configs',
        nargs='*',
        default=[],
        help='test configs whose metric is compared (test_dataloader, '
        'test_evaluator)')
    parser.add_argument(
        '--max-images',
        type=positive_int,
        help='evaluate the first N images of each eval config only')
    parser.add_argument(
        '--int8-graphs',
        nargs='+',
        help='graphs to quantize (default: rap_sam.deploy.quantize.'
        'DEFAULT_INT8_GRAPHS)')
    parser.add_argument(
        '--calibration',
        choices=CALIBRATIONS,
        default=DEFAULT_CALIBRATION,
        help='int8 activation ranges (rap_sam.deploy.quantize.CALIBRATIONS)')
    CLI['add_int8_weight_bits'](parser)
    parser.add_argument(
        '--max-calib-images',
        type=positive_int,
        default=32,
        help='calibration images used at most (spread over the folder)')
    parser.add_argument(
        '--int8-modules',
        nargs='+',
        help='quantize only these modules\' layers '
        f'({", ".join(INT8_MODULES)}; default all)')
    parser.add_argument(
        '--scale',
        type=positive_int,
        nargs=2,
        metavar=('W', 'H'),
        help='export and resize scale (default: the config\'s test scale)')
    parser.add_argument(
        '--threads',
        type=positive_int,
        default=None,
        help='threads of each ONNX Runtime / OpenVINO graph (default: the '
        'runtime\'s own)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/deploy_accuracy',
        help='exports and the json report')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help="replace an earlier run's exports and report in --work-dir "
        '(without it the tool refuses a --work-dir that holds anything)')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    return parser.parse_args(argv)


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from rap_sam.utils.user_errors import UserError, cli_errors  # noqa: E402


def check_before_export(args) -> None:
    """What would otherwise fail after the exports (minutes at full size):
    the work dir, the photos, the eval configs, the config overrides."""
    from rap_sam.apis import read_image
    from rap_sam.deploy.deploy_spec import list_names
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.output_files import make_out_dir
    from rap_sam.utils.runner_cli import is_eval_config, is_video_config
    bad = [item for item in args.cfg_options if '=' not in item]
    if bad:
        raise UserError(f'--cfg-options takes key=value items, got '
                        f'{bad[0]!r}.')
    make_out_dir(args.work_dir)
    held = sorted(os.listdir(args.work_dir))
    if held and not args.overwrite:
        raise UserError(
            f'{args.work_dir} holds an earlier run ({list_names(held)}): '
            'pass --overwrite to replace its exports and report, or choose '
            'another --work-dir.')
    for path in args.photos or ():
        read_image(path)
    for path in args.eval_configs:
        cfg = read_config(path)
        # Both failed after the exports, in the first evaluation (an
        # AttributeError): a config without a test loop, and a video one,
        # whose samples the modes (images and clicks) cannot predict.
        if not is_eval_config(cfg):
            raise UserError(
                f'--eval-configs {path} is not an evaluation config (no '
                'test_dataloader or test_evaluator): give test configs such '
                'as configs/rap_sam/toy_eval_coco.py.')
        if is_video_config(cfg):
            raise UserError(
                f'--eval-configs {path} evaluates videos; the modes are '
                'compared on images and clicks (an export has no clip '
                'graph): give image or prompt configs such as '
                'configs/rap_sam/toy_eval_coco.py.')


def main(argv=None):
    args = parse_args(argv)
    if args.trust_checkpoint:
        from rap_sam.utils.checkpoint import trust_all_checkpoints
        trust_all_checkpoints()
    with cli_errors('the exports in --work-dir may be incomplete; run '
                    'again with --overwrite to replace them'):
        compare(args)


def compare(args) -> None:
    from rap_sam.deploy.accuracy import (check_inputs, compare_modes,
                                         parse_cfg_options, parse_modes)
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.output_files import write_bytes
    from rap_sam.utils.runner_cli import (merge_model_options,
                                          unexpected_options)
    modes = parse_modes(args.modes)
    # The images chosen here are the ones quantized with: the folder is
    # read and its unreadable files said once.
    calib = check_inputs(modes, args.calib, args.int8_modules,
                         args.int8_graphs, args.max_calib_images)
    check_before_export(args)
    options = parse_cfg_options(args.cfg_options)
    # Checked before the exports (minutes); compare_modes merges them.
    merge_model_options(read_config(args.config), options)
    with unexpected_options(options):
        report = compare_modes(
            args.config,
            args.checkpoint,
            modes,
            args.work_dir,
            calib=calib,
            cfg_options=options,
            scale=tuple(args.scale) if args.scale else None,
            photos=args.photos,
            eval_configs=args.eval_configs,
            max_images=args.max_images,
            int8_graphs=args.int8_graphs,
            int8_modules=args.int8_modules,
            calibration=args.calibration,
            weight_bits=args.int8_weight_bits,
            max_calib_images=args.max_calib_images,
            num_threads=args.threads,
            log=lambda line: print(line, flush=True))
    print('\nAgainst fp32 of the same backend, on photos '
          f'({", ".join(report["photos"])}):\n')
    print(report['photo_table'])
    if 'dataset_table' in report:
        print('\nTest-set metrics:\n')
        print(report['dataset_table'])
    out = osp.join(args.work_dir, 'deploy_accuracy.json')
    write_bytes(out, json.dumps(report, indent=1).encode('utf-8'))
    print(f'written: {out}')


if __name__ == '__main__':
    main()
