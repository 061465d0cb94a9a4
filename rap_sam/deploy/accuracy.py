"""How far an approximate mode (int8, bf16, the half-resolution
post-processing) moves the model's outputs from fp32: per photo
(instances kept, mask IoU of matched instances, panoptic pixels with the
same class, prompt mask IoU) and on a labelled dataset
(any test config's metric: PQ, click mIoU ...), each computed through
:class:`rap_sam.apis.RapSAMPredictor`, the way a user runs the model.

:func:`compare_modes` is the whole measurement
(``tools/analysis/deploy_accuracy.py`` reports it): the fp32 export, the
int8 one made from it, then each mode against fp32 of the same backend.
"""
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from scipy.optimize import linear_sum_assignment

from rap_sam.utils.user_errors import UserError
from .backends import BACKENDS as RUNTIMES
from .backends import FOLDER_PRECISIONS, reads_int8_folder
from .quantize import DEFAULT_CALIBRATION, check_int8_modules

#: scikit-image's real photos (``skimage.data``), beside demo/demo.jpg.
SKIMAGE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
DEFAULT_MODES = ('onnxruntime:int8', 'openvino:int8', 'openvino:bf16')
#: The metrics shown in the dataset table, when the evaluator reports them.
KEY_METRICS = ('coco_panoptic/PQ', 'coco_panoptic/SQ', 'coco_panoptic/RQ',
               'coco_sam/mIoU', 'coco_sam/mIoU_things', 'coco_sam/mIoU_stuff')


def mask_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``[N, M]`` IoU of bool masks ``a`` ``[N, H, W]`` and ``b``
    ``[M, H, W]``."""
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


def match_instances(ref, test, iou_thr: float = 0.5) -> dict:
    """Match ``test``'s instances to ``ref``'s (``InstanceData`` with
    ``masks`` and ``labels``), one to one, by mask IoU (Hungarian).

    Returns:
        dict: ``ref`` and ``test`` counts; ``kept``, the ``ref`` instances
        matched at IoU >= ``iou_thr`` with the same label; ``mean_iou`` and
        ``min_iou`` over those (1.0 when there are none).
    """
    n, m = len(ref), len(test)
    kept_ious = []
    if n and m:
        ious = mask_iou_matrix(ref.masks.cpu(), test.masks.cpu())
        rows, cols = linear_sum_assignment(-ious)
        same = (
            ref.labels.cpu().numpy()[rows] == test.labels.cpu().numpy()[cols])
        good = (ious[rows, cols] >= iou_thr) & same
        kept_ious = ious[rows, cols][good].tolist()
    return dict(
        ref=n,
        test=m,
        kept=len(kept_ious),
        mean_iou=float(np.mean(kept_ious)) if kept_ious else 1.0,
        min_iou=float(np.min(kept_ious)) if kept_ious else 1.0)


def panoptic_class_agreement(ref_seg: torch.Tensor,
                             test_seg: torch.Tensor) -> float:
    """The fraction of pixels whose panoptic class (the id modulo
    ``INSTANCE_OFFSET``; instance ids differ between runs) is the same."""
    ref_cls = ref_seg.cpu() % INSTANCE_OFFSET
    test_cls = test_seg.cpu() % INSTANCE_OFFSET
    return float((ref_cls == test_cls).float().mean())


def grid_clicks(width: int, height: int, grid: int = 4) -> np.ndarray:
    """``[grid * grid, 2]`` clicks (x, y) at the centres of a regular grid
    over a ``width x height`` image."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def panoptic_segments(pan_seg: torch.Tensor, num_classes: int):
    """The segments of a panoptic map ``[H, W]`` (``label + id *
    INSTANCE_OFFSET``; ``num_classes`` is void) as ``InstanceData`` with
    ``masks`` and ``labels``."""
    from mmengine.structures import InstanceData
    pan_seg = pan_seg.cpu()
    ids = [
        i for i in torch.unique(pan_seg).tolist()
        if i % INSTANCE_OFFSET != num_classes
    ]
    masks = torch.stack([pan_seg == i for i in ids]) if ids else \
        torch.zeros((0, ) + tuple(pan_seg.shape), dtype=torch.bool)
    labels = torch.tensor([i % INSTANCE_OFFSET for i in ids], dtype=torch.long)
    return InstanceData(masks=masks, labels=labels)


def compare_on_photo(ref_predictor,
                     test_predictor,
                     img: np.ndarray,
                     grid: int = 4,
                     iou_thr: float = 0.5,
                     score_thr: float = 0.5) -> dict:
    """One photo through both predictors.

    Returns:
        dict: ``segments``: :func:`match_instances` of the panoptic
        segments (things and stuff, what a user sees); ``instances``: of
        the thing instances scoring >= ``score_thr`` in ``ref``, each
        looked for among all of ``test``'s (so a score moving across the
        threshold does not count as lost); ``panoptic_agreement``;
        ``click_mean_iou`` / ``click_min_iou``: IoU of each of ``grid x
        grid`` clicks' masks in the two.
    """
    ref = ref_predictor.segment_image(img)
    test = test_predictor.segment_image(img)
    num_classes = len(ref_predictor.class_names)
    result = dict(
        segments=match_instances(
            panoptic_segments(ref.pred_panoptic_seg.sem_seg[0], num_classes),
            panoptic_segments(test.pred_panoptic_seg.sem_seg[0], num_classes),
            iou_thr))
    confident = ref.pred_instances[ref.pred_instances.scores >= score_thr]
    result['instances'] = match_instances(confident, test.pred_instances,
                                          iou_thr)
    result['panoptic_agreement'] = panoptic_class_agreement(
        ref.pred_panoptic_seg.sem_seg[0], test.pred_panoptic_seg.sem_seg[0])
    clicks = grid_clicks(img.shape[1], img.shape[0], grid)
    masks = []
    for predictor in (ref_predictor, test_predictor):
        predictor.set_image(img)
        masks.append(
            predictor.predict_prompts(
                points=clicks).pred_instances.masks.cpu())
    ious = np.diag(mask_iou_matrix(*masks))
    # Two empty masks agree perfectly.
    empty = (masks[0].flatten(1).sum(1) == 0) & (
        masks[1].flatten(1).sum(1) == 0)
    ious = np.where(empty.numpy(), 1.0, ious)
    result.update(
        click_mean_iou=float(ious.mean()), click_min_iou=float(ious.min()))
    return result


def evaluate_predictor(predictor,
                       cfg,
                       max_images: Optional[int] = None) -> Dict[str, float]:
    """``cfg``'s test metric (its ``test_dataloader`` and
    ``test_evaluator``) with ``predictor`` making the predictions: panoptic
    images through :meth:`segment_image`, prompt samples
    (``gt_instances_collected``) through :meth:`set_image` and
    :meth:`predict_prompts`, from the original image file, as a user
    would. With the torch predictor this gives tools/test.py's figures.

    Args:
        max_images (int, optional): Evaluate the first ones only.
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    dataloader_cfg = cfg.test_dataloader.copy()
    dataloader_cfg.update(num_workers=0, persistent_workers=False)
    dataloader = Runner.build_dataloader(dataloader_cfg)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    count = 0
    for batch in dataloader:
        for sample in batch['data_samples']:
            _predict_into(predictor, sample)
        evaluator.process(data_samples=batch['data_samples'], data_batch=batch)
        count += len(batch['data_samples'])
        if max_images is not None and count >= max_images:
            break
    return evaluator.evaluate(count)


def _predict_into(predictor, sample) -> None:
    img = predictor.read_image(sample.img_path)
    if 'gt_instances_collected' not in sample:
        result = predictor.segment_image(img)
        for key in ('pred_panoptic_seg', 'pred_instances'):
            if key in result:
                sample.set_field(result.get(key), key)
        return
    prompts = sample.gt_instances_collected
    # The dataset's prompts are in resized pixels; the predictor takes the
    # original image's (and resizes them back to the same boxes).
    sx, sy = sample.metainfo['scale_factor'][:2]
    boxes = prompts.point_coords.cpu().numpy() / np.array([sx, sy, sx, sy])
    is_box = prompts.is_box.cpu().numpy().astype(bool)
    order = np.concatenate([np.flatnonzero(~is_box), np.flatnonzero(is_box)])
    clicks = (boxes[~is_box, :2] + boxes[~is_box, 2:]) / 2
    predictor.set_image(img)
    if len(order):
        result = predictor.predict_prompts(
            points=clicks if len(clicks) else None,
            boxes=boxes[is_box] if is_box.any() else None)
        pred = result.pred_instances
        # Back to the dataset's prompt order (the predictor puts points
        # first).
        masks = torch.empty_like(pred.masks)
        masks[torch.from_numpy(order)] = pred.masks
    else:
        h, w = img.shape[:2]
        masks = torch.zeros((0, h, w), dtype=torch.bool)
    sample.pred_instances = _instances(masks=masks)


def _instances(**fields):
    from mmengine.structures import InstanceData
    return InstanceData(**fields)


def _summarize_matches(matches: Sequence[dict]) -> dict:
    ref = sum(m['ref'] for m in matches)
    kept = sum(m['kept'] for m in matches)
    return dict(
        ref=ref,
        test=sum(m['test'] for m in matches),
        kept=kept,
        kept_fraction=kept / ref if ref else 1.0,
        # Averaged per matched instance, not per photo.
        mean_iou=float(
            np.average([m['mean_iou'] for m in matches],
                       weights=[m['kept'] for m in matches])) if kept else 1.0,
        min_iou=min(m['min_iou'] for m in matches))


def summarize_photos(results: Sequence[dict]) -> dict:
    """Totals over :func:`compare_on_photo` results."""
    return dict(
        photos=len(results),
        segments=_summarize_matches([r['segments'] for r in results]),
        instances=_summarize_matches([r['instances'] for r in results]),
        panoptic_agreement=float(
            np.mean([r['panoptic_agreement'] for r in results])),
        click_mean_iou=float(np.mean([r['click_mean_iou'] for r in results])),
        click_min_iou=min(r['click_min_iou'] for r in results))


def photo_table(rows: List[dict]) -> str:
    """A markdown table of :func:`summarize_photos` rows (each with a
    ``mode`` key)."""
    lines = [
        '| mode | photos | panoptic segments kept | their mask IoU mean / '
        'min | confident instances kept | their mask IoU mean / min | '
        'pixels of the same class | click mask IoU mean / min |',
        '|---|---|---|---|---|---|---|---|'
    ]

    def kept(m):
        return (f"{m['kept']} / {m['ref']} ({100 * m['kept_fraction']:.1f} "
                f"%) | {m['mean_iou']:.4f} / {m['min_iou']:.4f}")

    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['photos']} | {kept(r['segments'])} | "
            f"{kept(r['instances'])} | "
            f"{100 * r['panoptic_agreement']:.2f} % | "
            f"{r['click_mean_iou']:.4f} / {r['click_min_iou']:.4f} |")
    return '\n'.join(lines)


def dataset_table(metrics: Dict[Tuple[str, str, str], dict]) -> str:
    """A markdown table of test-set metrics keyed by ``(backend,
    precision, eval config name)``: one row per config and
    :data:`KEY_METRICS` entry it reports, one column per backend and
    precision, in the order first seen."""
    cols = []
    for b, p, _ in metrics:
        if (b, p) not in cols:
            cols.append((b, p))
    lines = [
        '| eval config | metric | ' + ' | '.join(f'{b}:{p}'
                                                 for b, p in cols) + ' |',
        '|---|---|' + '---|' * len(cols)
    ]
    for name in sorted({n for _, _, n in metrics}):
        keys = [
            k for k in KEY_METRICS if any(
                k in m for (_, _, n), m in metrics.items() if n == name)
        ]
        for key in keys:
            cells = []
            for b, p in cols:
                value = metrics.get((b, p, name), {}).get(key)
                cells.append('' if value is None else f'{value:.4g}')
            lines.append(f'| {name} | {key} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------
# the whole measurement
# ----------------------------------------------------------------------
def parse_modes(modes: Sequence[str]) -> List[Tuple[str, str]]:
    """``BACKEND:PRECISION[:POST]`` strings as ``(backend, setting)``, the
    setting being ``PRECISION`` or, with an approximate post-processing
    (:data:`~rap_sam.deploy.prepare.POSTS`), ``PRECISION:POST`` (e.g.
    ``torch:fp32:half``, ``openvino:int8:half``); a mode that cannot be
    compared with fp32 is a :class:`UserError`."""
    from .prepare import POSTS
    approximate = [p for p in POSTS if p != 'exact']
    usage = (f'--modes takes BACKEND:PRECISION[:POST] (backend torch, '
             'onnxruntime or openvino; precision bf16, int8 or int8-bf16, '
             f'or fp32 with a post; post {" or ".join(approximate)})')
    parsed = []
    for mode in modes:
        parts = mode.split(':')
        if len(parts) == 2:
            parts.append('exact')
        if len(parts) != 3:
            raise UserError(f'{usage}, got {mode!r}.')
        backend, precision, post = parts
        known = (
            backend in ('torch', 'onnxruntime', 'openvino')
            and precision in FOLDER_PRECISIONS and post in POSTS)
        if not known:
            raise UserError(f'{usage}, got {mode!r}.')
        if (precision, post) == ('fp32', 'exact'):
            raise UserError(f'{usage}, got {mode!r} (fp32 with the exact '
                            'post-processing is what each mode is '
                            'compared with).')
        if backend == 'torch' and reads_int8_folder(precision):
            raise UserError(f'{precision} runs on an int8 export '
                            '(onnxruntime or openvino), not on torch.')
        if backend in RUNTIMES and precision not in RUNTIMES[
                backend].precisions:
            raise UserError(
                f'{backend} runs {", ".join(RUNTIMES[backend].precisions)}, '
                f'not {precision} ({mode!r}).')
        parsed.append(
            (backend, precision if post == 'exact' else f'{precision}:{post}'))
    return parsed


def _split_setting(setting: str) -> Tuple[str, str]:
    """``PRECISION[:POST]`` as ``(precision, post)``."""
    precision, _, post = setting.partition(':')
    return precision, post or 'exact'


def check_inputs(modes: Sequence[Tuple[str, str]],
                 calib: Optional[str],
                 int8_modules: Optional[Sequence[str]] = None,
                 int8_graphs: Optional[Sequence[str]] = None,
                 max_calib_images: int = 32) -> Optional[List[str]]:
    """What can be checked before the (slow) export: an int8 mode needs a
    folder of calibration images (the ``max_calib_images`` the quantizer
    will read are decoded), ``int8_modules`` must name modules of
    the model (:data:`~rap_sam.deploy.quantize.INT8_MODULES`) and
    ``int8_graphs`` graphs of an export
    (:data:`~rap_sam.deploy.deploy_spec.GRAPH_NAMES`).

    Returns:
        list[str] or None: The calibration images chosen (None without an
        int8 mode), for :func:`compare_modes`'s ``calib``."""
    from .deploy_spec import GRAPH_NAMES
    check_int8_modules(int8_modules, '--int8-modules')
    unknown = [g for g in int8_graphs or () if g not in GRAPH_NAMES]
    if unknown:
        raise UserError(
            f'--int8-graphs: no graph {", ".join(repr(g) for g in unknown)} '
            f'in an export; choose from {", ".join(GRAPH_NAMES)}.')
    if any(reads_int8_folder(_split_setting(s)[0]) for _, s in modes):
        from .calibration import calibration_images
        return calibration_images(calib, max_calib_images)
    return None


def parse_cfg_options(pairs: Sequence[str]) -> dict:
    """``k=v`` strings as mmengine's ``DictAction`` parses them."""
    from mmengine.config import DictAction
    options = {}
    for pair in pairs:
        key, _, value = pair.partition('=')
        options[key] = DictAction._parse_iterable(value)
    return options


def load_config(path: str, options: dict, only_existing: bool = False):
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


def load_photos(paths: Optional[Sequence[str]] = None) -> dict:
    """BGR images by file name: ``paths``, or demo/demo.jpg and
    :data:`SKIMAGE_PHOTOS`."""
    import cv2

    from rap_sam.apis import read_image
    from .benchmark import DEMO_IMAGE
    if paths:
        return {osp.basename(p): read_image(p) for p in paths}
    photos = {'demo.jpg': read_image(DEMO_IMAGE)}
    import skimage.data
    for name in SKIMAGE_PHOTOS:
        rgb = getattr(skimage.data, name)()
        photos[name] = cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR)
    return photos


def load_model(cfg, checkpoint: str) -> torch.nn.Module:
    """The model as built, with the checkpoint's weights."""
    from mmdet.registry import MODELS

    from rap_sam.utils.checkpoint import load_model_weights
    cfg = cfg.copy()
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    load_model_weights(model, checkpoint)
    return model.eval()


def compare_modes(config: str,
                  checkpoint: str,
                  modes: Sequence[Tuple[str, str]],
                  work_dir: str,
                  calib: Optional[Union[str, List[str]]] = None,
                  cfg_options: Optional[dict] = None,
                  scale: Optional[Tuple[int, int]] = None,
                  photos: Optional[Sequence[str]] = None,
                  eval_configs: Sequence[str] = (),
                  max_images: Optional[int] = None,
                  int8_graphs: Optional[Sequence[str]] = None,
                  int8_modules: Optional[Sequence[str]] = None,
                  calibration: str = DEFAULT_CALIBRATION,
                  weight_bits: int = 8,
                  max_calib_images: int = 32,
                  num_threads: Optional[int] = None,
                  log: Callable[[str], None] = print) -> dict:
    """Each mode ``(backend, setting)`` against ``backend`` in fp32 with
    the exact post-processing (``setting``: a precision or
    ``PRECISION:POST``, as :func:`parse_modes` makes them).

    Exports the model (fp32, at ``scale`` or the config's test scale) to
    ``WORK_DIR/fp32`` and, for int8 modes, quantizes it to
    ``WORK_DIR/int8`` (calibrated on ``calib``, a folder or the files
    :func:`check_inputs` chose from one, weights of ``weight_bits``; both
    replaced). Then per
    mode: :func:`compare_on_photo` on each of ``photos`` (default
    :func:`load_photos`) and :func:`evaluate_predictor` on each of
    ``eval_configs`` (``cfg_options`` apply to ``config``, and to each eval
    config those whose key it has). ``num_threads`` is each runtime
    backend's thread count (default the runtime's own). ``log`` gets
    progress lines.

    Returns:
        dict: the report: ``config``, ``checkpoint``, ``scale``, ``calib``,
        ``photos``, per mode its photos, photo summary and dataset metrics
        (``fp32`` and ``mode``), ``photo_table`` and, with eval configs,
        ``dataset_table`` (markdown).
    """
    from rap_sam.apis import RapSAMPredictor
    from .export import export_model
    from .quantize import quantize_export
    int8_modules = check_int8_modules(int8_modules, 'int8_modules')
    options = cfg_options or {}
    cfg = load_config(config, options)
    fp32_dir = osp.join(work_dir, 'fp32')
    start = time.time()
    torch_fp32 = RapSAMPredictor(cfg, checkpoint, 'cpu', scale=scale)
    # The predictor's model is prepared for torch ('fast'); the exporter
    # prepares its own, from the model as built.
    export_model(
        load_model(cfg, checkpoint),
        fp32_dir,
        cfg=cfg,
        scale=torch_fp32.scale,
        class_names=torch_fp32.class_names,
        overwrite=True)
    log(f'fp32 export: {fp32_dir} ({time.time() - start:.0f} s)')
    exports = {'fp32': fp32_dir}
    if any(reads_int8_folder(_split_setting(s)[0]) for _, s in modes):
        start = time.time()
        exports['int8'] = quantize_export(
            fp32_dir,
            'int8',
            calib,
            out_dir=osp.join(work_dir, 'int8'),
            graphs=int8_graphs,
            modules=int8_modules,
            calibration=calibration,
            max_calib_images=max_calib_images,
            weight_bits=weight_bits,
            overwrite=True)
        log(f'int8 export: {exports["int8"]} ({time.time() - start:.0f} s)')

    predictors = {('torch', 'fp32'): torch_fp32}

    def predictor(backend, setting):
        key = (backend, setting)
        precision, post = _split_setting(setting)
        if key not in predictors:
            if backend == 'torch':
                made = RapSAMPredictor(
                    cfg,
                    checkpoint,
                    'cpu',
                    scale=scale,
                    precision=precision,
                    post=post)
            else:
                folder = exports['int8' if reads_int8_folder(precision
                                                             ) else 'fp32']
                made = RapSAMPredictor.from_export(
                    folder,
                    backend=backend,
                    precision=precision,
                    num_threads=num_threads,
                    post=post)
            # A predictor of its own: the fp32 one it is compared with
            # keeps the exact post-processing.
            predictors[key] = made
        return predictors[key]

    images = load_photos(photos)
    eval_cfgs = {
        osp.basename(p): load_config(p, options, only_existing=True)
        for p in eval_configs
    }
    report = dict(
        config=config,
        checkpoint=checkpoint,
        scale=list(torch_fp32.scale),
        calib=calib,
        photos=sorted(images),
        modes={})
    metrics_cache = {}

    def metrics(backend, precision, name):
        key = (backend, precision, name)
        if key not in metrics_cache:
            metrics_cache[key] = evaluate_predictor(
                predictor(backend, precision), eval_cfgs[name], max_images)
        return metrics_cache[key]

    rows = []
    for backend, precision in modes:
        mode = f'{backend}:{precision}'
        start = time.time()
        per_photo = {
            name:
            compare_on_photo(
                predictor(backend, 'fp32'), predictor(backend, precision), img)
            for name, img in images.items()
        }
        summary = dict(mode=mode, **summarize_photos(list(per_photo.values())))
        rows.append(summary)
        entry = dict(photos=per_photo, photo_summary=summary, datasets={})
        for name in eval_cfgs:
            before = metrics(backend, 'fp32', name)
            after = metrics(backend, precision, name)
            entry['datasets'][name] = dict(fp32=before, mode=after)
        report['modes'][mode] = entry
        log(f'{mode}: {time.time() - start:.0f} s')
    report['photo_table'] = photo_table(rows)
    if eval_cfgs:
        report['dataset_table'] = dataset_table(metrics_cache)
    return report
