"""Export RAP-SAM to ONNX (standard operators): three graphs and deploy.json.

    python tools/deploy/export.py CONFIG [--checkpoint CKPT] --out DIR
        [--shape H W | --scale W H] [--dynamic]
        [--precision fp32|bf16|int8] [--calib DIR_OF_IMAGES]
        [--calibration minmax|percentile] [--int8-weight-bits 8|7]
        [--classes FILE [--num-things N] [--clip-checkpoint CLIP.bin]]
        [--trust-checkpoint] [--overwrite] [--cfg-options k=v ...]

Writes ``image_encoder.onnx``, ``panoptic_decoder.onnx``,
``prompt_decoder.onnx`` and ``deploy.json`` to DIR (see
:mod:`rap_sam.deploy.export`). Images are resized to fit ``--scale``
(default: the config's test scale) and padded to ``--shape`` (default: the
scale rounded up to the size divisor), or with ``--dynamic`` to the size
divisor only (the graphs take any height and width).
``--precision int8`` quantizes the fp32 export, calibrated on the images in
``--calib``; ``bf16`` marks the graphs for OpenVINO's bfloat16 inference
(:mod:`rap_sam.deploy.quantize`). Run the folder with
``RapSAMPredictor.from_export(DIR, backend='onnxruntime'|'openvino')``.
"""
import argparse
import logging
import os
import os.path as osp
import runpy
import shutil
import sys
import warnings

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

# By its path (importing rap_sam would import torch before --help); run as
# a program, a Ctrl+C or SIGTERM from here on is one line.
CLI = runpy.run_path(
    osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py'), run_name=__name__)
add_trust_checkpoint = CLI['add_trust_checkpoint']
parse_with_cfg_options = CLI['parse_with_cfg_options']

#: rap_sam.deploy.quantize's calibrations, written out: importing it would
#: import torch before the arguments are parsed (a test checks they agree).
CALIBRATIONS = ('minmax', 'percentile')
DEFAULT_CALIBRATION = 'minmax'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='a RAP-SAM eval config')
    parser.add_argument(
        '--checkpoint',
        help='model weights (without: random weights, for trying the tool)')
    parser.add_argument('--out', required=True, help='the export folder')
    size = parser.add_argument_group('input size (per-shape export)')
    size.add_argument(
        '--scale',
        type=int,
        nargs=2,
        metavar=('W', 'H'),
        help='images are resized to fit W x H, keeping their aspect ratio '
        '(default: the config\'s test scale)')
    size.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='the image encoder\'s input, resized images zero-padded to it '
        '(default: the scale rounded up to the size divisor)')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='free height and width: images padded to the size divisor '
        'only (default: one input shape, --shape)')
    parser.add_argument(
        '--precision',
        default='fp32',
        choices=['fp32', 'bf16', 'int8'],
        help='fp32 (exact, default); bf16 (OpenVINO) and int8 (calibrated '
        'on --calib) are approximate')
    parser.add_argument(
        '--calib', help='int8: a folder of typical images to calibrate on')
    parser.add_argument(
        '--calibration',
        default=DEFAULT_CALIBRATION,
        choices=CALIBRATIONS,
        help='int8 activation ranges: min/max (default) or the 99.99th '
        'percentile (less accuracy lost; the encoder runs twice per image); '
        'both in memory independent of the number of images')
    CLI['add_int8_weight_bits'](parser)
    parser.add_argument(
        '--classes',
        help='a text file, one class a line (synonyms comma-separated): '
        'the vocabulary baked into the decoders instead of the config\'s')
    parser.add_argument(
        '--num-things',
        type=int,
        help='with --classes: the first N classes are things, the rest '
        'stuff (default: all things)')
    parser.add_argument(
        '--clip-checkpoint',
        help='with --classes: a local OpenCLIP checkpoint to encode them')
    add_trust_checkpoint(
        parser,
        help='load a checkpoint that pickles objects beyond tensors (only '
        'from a source you trust)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an earlier export in --out')
    return parse_with_cfg_options(parser, argv,
                                  'model.test_cfg.max_per_image=50')


if __name__ == '__main__':
    # Before the imports below (torch, mmdet: seconds): --help and a usage
    # error answer at once.
    parse_args()

from rap_sam.utils.user_errors import UserError, UserNotice, cli_errors


class ExportArgumentError(UserError):
    """Options of the export tool that do not go together."""


def check_args(args) -> None:
    """Every option checked before the (slow) model is built."""
    from rap_sam.deploy.export import check_export_options
    if args.calib is not None and args.precision != 'int8':
        raise ExportArgumentError(
            '--calib is for --precision int8 (calibration images); drop it '
            f'or export int8 (asked: {args.precision}).')
    args.calib_images = None
    if args.precision == 'int8':
        from rap_sam.deploy.calibration import calibration_images
        from rap_sam.deploy.quantize import DEFAULT_MAX_CALIB_IMAGES

        # Decodes the images the quantizer will read: a folder without a
        # readable one was found only after the fp32 export (minutes at
        # full size). The quantizer takes the files chosen here.
        args.calib_images = calibration_images(args.calib,
                                               DEFAULT_MAX_CALIB_IMAGES)
    if args.calibration == 'percentile' and args.precision != 'int8':
        raise ExportArgumentError(
            '--calibration percentile is for --precision int8; drop it or '
            f'export int8 (asked: {args.precision}).')
    if args.int8_weight_bits != 8 and args.precision != 'int8':
        raise ExportArgumentError(
            f'--int8-weight-bits {args.int8_weight_bits} is for --precision '
            f'int8; drop it or export int8 (asked: {args.precision}).')
    if args.classes is None:
        for name in ('num_things', 'clip_checkpoint'):
            if getattr(args, name) is not None:
                raise ExportArgumentError(
                    f'--{name.replace("_", "-")} goes with --classes FILE.')
    elif not osp.isfile(args.classes):
        raise ExportArgumentError(f'Class file not found: {args.classes}')
    else:
        from rap_sam.utils.text_classifier import (check_num_things,
                                                   read_class_file)

        # A bad class file (empty, not text, a class twice), and a count
        # with the option's name, said before the model is built.
        check_num_things(args.num_things, read_class_file(args.classes),
                         args.classes)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise ExportArgumentError(
            f'Checkpoint file not found: {args.checkpoint}')
    check_export_options(args.out, overwrite=args.overwrite)


def load_config(args):
    from rap_sam.utils.config_file import read_config
    cfg = read_config(args.config)
    from rap_sam.utils.runner_cli import merge_model_options
    merge_model_options(cfg, args.cfg_options, ExportArgumentError)
    if not isinstance(cfg.get('model'), dict) or \
            'panoptic_head' not in cfg.model:
        raise ExportArgumentError(
            f'{args.config} is not a RAP-SAM config (no '
            'model.panoptic_head): use one of configs/rap_sam/.')
    # Weights come from the checkpoint; no pretrained backbone download.
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(cfg, args):
    """The model as the config builds it, with the checkpoint's weights
    and the vocabulary (``--classes``); returns it and its class names."""
    from mmdet.registry import MODELS
    from mmengine.logging import MMLogger

    from rap_sam.apis.predictor import RANDOM_WEIGHTS_WARNING
    from rap_sam.utils.checkpoint import (load_model_weights,
                                          trust_all_checkpoints)
    from rap_sam.utils.class_embeddings import class_embedding_path
    from rap_sam.utils.runner_cli import unexpected_options
    from rap_sam.visualization import config_dataset_meta
    head = cfg.model.panoptic_head
    if args.checkpoint is None:
        warnings.warn(RANDOM_WEIGHTS_WARNING, UserNotice)
        name = head.get('ov_classifier_name')
        if name and not osp.isfile(
                class_embedding_path(name, head.get('ov_classifier_dir'))):
            warnings.warn(
                f'Class-embedding file {name}.pth not found: using '
                'random class embeddings as well (see '
                'tools/gen_cls.py).', UserNotice)
            head.ov_classifier_name = None
    # A misspelt last key of --cfg-options is a keyword the class does not
    # take: one line naming the option.
    with unexpected_options(args.cfg_options):
        model = MODELS.build(cfg.model)
    if args.checkpoint is None:
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # no per-parameter init table
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    else:
        if args.trust_checkpoint:
            trust_all_checkpoints()
        load_model_weights(model, args.checkpoint)
    if args.classes is not None:
        return model, use_class_file(model, args)
    meta = config_dataset_meta(cfg, model.num_classes,
                               model.num_things_classes)
    return model, list(meta['classes'])


def use_class_file(model, args) -> list:
    """Swap the model's classifier for the class file's classes; returns
    their display names."""
    from rap_sam.models.utils import use_vocabulary
    from rap_sam.utils.text_classifier import read_class_file
    names, _ = use_vocabulary(model, read_class_file(args.classes),
                              args.num_things, args.clip_checkpoint)
    return names


def main(argv=None) -> str:
    args = parse_args(argv)
    cfg = load_config(args)
    check_args(args)
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
    from rap_sam.deploy.export import export_model, input_shape
    from rap_sam.utils.config_file import config_test_scale
    scale = tuple(args.scale) if args.scale else None
    if scale is None and args.shape is None:
        scale = config_test_scale(cfg)
    scale, shape = input_shape(scale, args.shape, divisor)
    model, class_names = build_model(cfg, args)
    model.eval()
    out = args.out
    if args.precision == 'fp32':
        export_model(
            model,
            out,
            cfg=cfg,
            scale=scale,
            shape=shape,
            dynamic=args.dynamic,
            class_names=class_names,
            overwrite=args.overwrite)
    else:
        from rap_sam.deploy.deploy_spec import make_work_folder
        from rap_sam.deploy.quantize import quantize_export

        # The fp32 export the approximate one is made from, beside --out
        # and removed after.
        work = make_work_folder(osp.dirname(osp.abspath(out)), 'fp32')
        try:
            fp32 = osp.join(work, 'fp32')
            export_model(
                model,
                fp32,
                cfg=cfg,
                scale=scale,
                shape=shape,
                dynamic=args.dynamic,
                class_names=class_names)
            quantize_export(
                fp32,
                args.precision,
                args.calib_images,
                out_dir=out,
                calibration=args.calibration,
                weight_bits=args.int8_weight_bits,
                overwrite=args.overwrite)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    files = sorted(os.listdir(out))
    print(f'{args.precision} export of {osp.basename(args.config)} at '
          f'{shape[1]}x{shape[0]} (scale {scale[0]}x{scale[1]}) in {out}: '
          f'{", ".join(files)}')
    return out


if __name__ == '__main__':
    with cli_errors():
        main()
