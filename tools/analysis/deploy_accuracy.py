"""How much the approximate deploy modes (int8, bf16) change the outputs.

    python tools/analysis/deploy_accuracy.py CONFIG --checkpoint CKPT
        --calib DIR_OF_IMAGES [--calibration minmax|percentile]
        [--modes onnxruntime:int8 openvino:int8 openvino:bf16 torch:bf16]
        [--photos IMG ...] [--eval-configs CFG ...] [--scale W H]
        [--work-dir DIR] [--cfg-options k=v ...]

Exports the model (fp32, at ``--scale`` or the config's test scale), makes
the int8 export from it (calibrated on ``--calib``), then, for each mode
``BACKEND:PRECISION`` against the same backend in fp32:

- on photos (default: demo/demo.jpg and scikit-image's astronaut, coffee,
  chelsea, rocket): thing instances kept (matched one to
  one by mask IoU >= 0.5, same label), the IoU of matched masks, panoptic
  pixels of the same class, and 4 x 4 grid clicks' mask IoU;
- on each ``--eval-configs`` test set (e.g. the toy model's PQ and click
  mIoU configs): the metrics in fp32 and in the mode, and their drop.

``--cfg-options`` apply to CONFIG, and to each eval config those whose
key it has. Prints the
tables (markdown) and writes them with the raw figures to
``WORK_DIR/deploy_accuracy.json``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

#: scikit-image's real photos (``skimage.data``), beside demo/demo.jpg.
SKIMAGE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
DEFAULT_MODES = ('onnxruntime:int8', 'openvino:int8', 'openvino:bf16')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the model config')
    parser.add_argument(
        '--checkpoint',
        required=True,
        help='the weights (every variant must load the same ones)')
    parser.add_argument(
        '--calib', help='a folder of calibration images (int8 modes)')
    parser.add_argument(
        '--modes',
        nargs='+',
        default=list(DEFAULT_MODES),
        help='BACKEND:PRECISION, each compared with BACKEND:fp32 '
        '(backends torch, onnxruntime, openvino; precisions bf16, int8)')
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
        type=int,
        help='evaluate the first N images of each eval config only')
    parser.add_argument(
        '--int8-graphs',
        nargs='+',
        help='graphs to quantize (default: rap_sam.deploy.quantize.'
        'DEFAULT_INT8_GRAPHS)')
    parser.add_argument(
        '--calibration',
        choices=['minmax', 'percentile'],
        default='minmax',
        help='int8 activation ranges (rap_sam.deploy.quantize.CALIBRATIONS)')
    parser.add_argument(
        '--max-calib-images',
        type=int,
        default=32,
        help='calibration images used at most (spread over the folder)')
    parser.add_argument(
        '--int8-modules',
        nargs='+',
        help='quantize only these modules\' layers (backbone, neck, '
        'panoptic_head; default all)')
    parser.add_argument(
        '--scale',
        type=int,
        nargs=2,
        metavar=('W', 'H'),
        help='export and resize scale (default: the config\'s test scale)')
    parser.add_argument(
        '--threads', type=int, default=None, help='runtime threads')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/deploy_accuracy',
        help='exports and the json report (the exports are replaced)')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    return parser.parse_args(argv)


def load_photos(paths):
    import cv2

    from rap_sam.apis import read_image
    if paths:
        return {osp.basename(p): read_image(p) for p in paths}
    photos = {'demo.jpg': read_image(osp.join(REPO, 'demo', 'demo.jpg'))}
    import skimage.data
    for name in SKIMAGE_PHOTOS:
        rgb = getattr(skimage.data, name)()
        photos[name] = cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR)
    return photos


def main(argv=None):
    args = parse_args(argv)
    from rap_sam.utils.user_errors import UserError, cli_errors
    with cli_errors():
        modes = []
        for mode in args.modes:
            backend, _, precision = mode.partition(':')
            if backend not in ('torch', 'onnxruntime', 'openvino') or \
                    precision not in ('bf16', 'int8'):
                raise UserError(
                    f'--modes takes BACKEND:PRECISION (backend torch, '
                    f'onnxruntime or openvino; precision bf16 or int8), got '
                    f'{mode!r}.')
            if (backend, precision) == ('torch', 'int8'):
                raise UserError('int8 runs on onnxruntime or openvino (an '
                                'int8 export), not on torch.')
            modes.append((backend, precision))
        if any(precision == 'int8' for _, precision in modes):
            # Checked before the (slow) export.
            from rap_sam.deploy.calibration import calibration_images
            calibration_images(args.calib)
        options = _parse_options(args.cfg_options)
        report = run(args, modes, options)
    os.makedirs(args.work_dir, exist_ok=True)
    out = osp.join(args.work_dir, 'deploy_accuracy.json')
    with open(out, 'w') as f:
        json.dump(report, f, indent=1)
    print(f'written: {out}')


def _parse_options(pairs):
    """``k=v`` strings as mmengine's ``DictAction`` parses them."""
    from mmengine.config import DictAction
    options = {}
    for pair in pairs:
        key, _, value = pair.partition('=')
        options[key] = DictAction._parse_iterable(value)
    return options


def _config(path, options, only_existing=False):
    """The config at ``path`` with ``options`` merged; ``only_existing``:
    those whose key it has (an evaluator option of one test config does not
    fit another's evaluator)."""
    from rap_sam.utils.config_file import read_config
    cfg = read_config(path)
    if only_existing:
        options = {k: v for k, v in options.items() if _has_key(cfg, k)}
    cfg.merge_from_dict(options)
    return cfg


def _has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split('.'):
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                return False
            node = node[int(part)]
        elif hasattr(node, 'keys') and part in node:
            node = node[part]
        else:
            return False
    return True


def load_model(cfg, checkpoint):
    """The model as built, with the checkpoint's weights."""
    from mmdet.registry import MODELS

    from rap_sam.utils.checkpoint import load_model_weights
    cfg = cfg.copy()
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    load_model_weights(model, checkpoint)
    return model.eval()


def run(args, modes, options) -> dict:
    from rap_sam.apis import RapSAMPredictor
    from rap_sam.deploy.accuracy import (compare_on_photo, evaluate_predictor,
                                         photo_table, summarize_photos)
    from rap_sam.deploy.export import export_model
    from rap_sam.deploy.quantize import quantize_export
    cfg = _config(args.config, options)
    scale = tuple(args.scale) if args.scale else None
    fp32_dir = osp.join(args.work_dir, 'fp32')
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the random-weights banner
        torch_fp32 = RapSAMPredictor(cfg, args.checkpoint, 'cpu', scale=scale)
    # The predictor's model is prepared for torch ('fast'); the exporter
    # prepares its own, from the model as built.
    export_model(
        load_model(cfg, args.checkpoint),
        fp32_dir,
        cfg=cfg,
        scale=torch_fp32.scale,
        class_names=torch_fp32.class_names,
        overwrite=True)
    print(f'fp32 export: {fp32_dir} ({time.time() - start:.0f} s)', flush=True)
    exports = {'fp32': fp32_dir}
    if any(p == 'int8' for _, p in modes):
        start = time.time()
        exports['int8'] = quantize_export(
            fp32_dir,
            'int8',
            args.calib,
            out_dir=osp.join(args.work_dir, 'int8'),
            graphs=args.int8_graphs,
            modules=args.int8_modules,
            calibration=args.calibration,
            max_calib_images=args.max_calib_images,
            overwrite=True)
        print(
            f'int8 export: {exports["int8"]} ({time.time() - start:.0f} '
            's)',
            flush=True)

    predictors = {('torch', 'fp32'): torch_fp32}

    def predictor(backend, precision):
        key = (backend, precision)
        if key not in predictors:
            if backend == 'torch':
                predictors[key] = RapSAMPredictor(
                    cfg,
                    args.checkpoint,
                    'cpu',
                    scale=scale,
                    precision=precision)
            else:
                folder = exports['int8' if precision == 'int8' else 'fp32']
                predictors[key] = RapSAMPredictor.from_export(
                    folder, backend=backend, precision=precision)
        return predictors[key]

    photos = load_photos(args.photos)
    eval_cfgs = {
        osp.basename(p): _config(p, options, only_existing=True)
        for p in args.eval_configs
    }
    report = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        scale=list(torch_fp32.scale),
        calib=args.calib,
        photos=sorted(photos),
        modes={})
    metrics_cache = {}

    def metrics(backend, precision, name):
        key = (backend, precision, name)
        if key not in metrics_cache:
            metrics_cache[key] = evaluate_predictor(
                predictor(backend, precision), eval_cfgs[name],
                args.max_images)
        return metrics_cache[key]

    rows = []
    for backend, precision in modes:
        mode = f'{backend}:{precision}'
        start = time.time()
        per_photo = {
            name:
            compare_on_photo(
                predictor(backend, 'fp32'), predictor(backend, precision), img)
            for name, img in photos.items()
        }
        summary = dict(mode=mode, **summarize_photos(list(per_photo.values())))
        rows.append(summary)
        entry = dict(photos=per_photo, photo_summary=summary, datasets={})
        for name in eval_cfgs:
            before = metrics(backend, 'fp32', name)
            after = metrics(backend, precision, name)
            entry['datasets'][name] = dict(fp32=before, mode=after)
        report['modes'][mode] = entry
        print(f'{mode}: {time.time() - start:.0f} s', flush=True)
    report['photo_table'] = photo_table(rows)
    print('\nAgainst fp32 of the same backend, on photos '
          f'({", ".join(sorted(photos))}):\n')
    print(report['photo_table'])
    if eval_cfgs:
        report['dataset_table'] = dataset_table(report, metrics_cache)
        print('\nTest-set metrics:\n')
        print(report['dataset_table'])
    return report


#: The metrics shown in the dataset table, when the evaluator reports them.
KEY_METRICS = ('coco_panoptic/PQ', 'coco_panoptic/SQ', 'coco_panoptic/RQ',
               'coco_sam/mIoU', 'coco_sam/mIoU_things', 'coco_sam/mIoU_stuff')


def dataset_table(report, metrics_cache) -> str:
    lines = [
        '| eval config | metric | ' +
        ' | '.join(f'{b}:{p}' for b, p, _ in _columns(metrics_cache)) + ' |'
    ]
    cols = _columns(metrics_cache)
    lines.append('|---|---|' + '---|' * len(cols))
    names = sorted({n for _, _, n in metrics_cache})
    for name in names:
        keys = [
            k for k in KEY_METRICS if any(
                k in m for (_, _, n), m in metrics_cache.items() if n == name)
        ]
        for key in keys:
            cells = []
            for b, p, _ in cols:
                value = metrics_cache.get((b, p, name), {}).get(key)
                cells.append('' if value is None else f'{value:.4g}')
            lines.append(f'| {name} | {key} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _columns(metrics_cache):
    seen = []
    for b, p, _ in metrics_cache:
        if (b, p, None) not in seen:
            seen.append((b, p, None))
    return seen


if __name__ == '__main__':
    main()
