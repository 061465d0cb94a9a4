"""Measuring RAP-SAM's inference: the pieces a benchmark run
(:class:`rap_sam.deploy.inference_benchmark.InferenceBenchmark`, which
``tools/analysis/benchmark.py`` runs) is made of.

- models: :func:`build_rap_sam` (a config, with a checkpoint's or seeded
  random weights), :func:`build_mask2former` (mmdet's own Mask2Former R50
  panoptic, the comparison), :func:`build_variant` (a variant of RAP-SAM
  from its inference setting, through :func:`rap_sam.deploy.prepare`);
- backends: :func:`variants` and :func:`skip_reason` (which (backend,
  precision) pairs a run times, and why the others cannot run here),
  :class:`RuntimeExports` (the export folders a run's ONNX Runtime and
  OpenVINO variants read: fp32, and int8 calibrated on
  :func:`write_calibration_images`), :class:`DeployedRunner`;
- inputs: :func:`load_image`, :func:`image_data`, :func:`video_data`,
  :func:`click_boxes`, :func:`preprocess`;
- timing: :class:`Runner` (one model's preprocessing and ``predict`` end
  to end and per stage through forward hooks), :class:`DeployedRunner`
  (an export folder on a runtime with the same torch post-processing, as
  :class:`rap_sam.apis.RapSAMPredictor` runs it), :func:`time_interleaved`
  (every runner once per round, so load on the machine falls on all
  alike), :func:`time_clicks` (a click decoded on cached features);
- complexity: :func:`count_flops`, :func:`peak_memory_mb`;
- agreement: :func:`compare_results`, :func:`head_output_error` (any two
  runners, torch or runtime);
- the machine: :func:`machine_info`, :func:`load_average`,
  :func:`tune_cpu_allocator`;
- the machine's limit: :func:`measure_roofline` (its matrix-multiply
  peak with the run's threads, per precision; :func:`best_of_rooflines`
  combines several) and :func:`roofline_bounds`
  (the network's floor at that peak, and the largest speed-up over
  Mask2Former it allows).
"""
import copy
import ctypes
import ctypes.util
import os
import os.path as osp
import platform
import statistics
import time
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from rap_sam.testing.data_batches import image_batch, video_batch
from rap_sam.testing.seeded_weights import randomize_
from rap_sam.utils.cpu_features import cpu_flags, cpu_has_bf16
from rap_sam.utils.user_errors import UserError
from .backends import reads_int8_folder, runs_bf16
from .prepare import prepare

STAGES = ('pre', 'backbone', 'neck', 'encoder', 'head', 'post', 'e2e')
#: Where a variant runs: the torch model, or its export on a runtime.
BACKENDS = ('torch', 'onnxruntime', 'openvino')
RUNTIMES = ('onnxruntime', 'openvino')
MASK2FORMER_CONFIG = (
    'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
DEMO_IMAGE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'demo',
    'demo.jpg')


# ----------------------------------------------------------------------
# models
# ----------------------------------------------------------------------
def build_rap_sam(config: str,
                  checkpoint: Optional[str] = None,
                  seed: int = 0,
                  notes: Optional[List[str]] = None,
                  cfg_options: Optional[dict] = None) -> nn.Module:
    """RAP-SAM as ``config`` builds it (``cfg_options`` merged into it, as
    ``Config.merge_from_dict`` takes them), in eval mode, with
    ``checkpoint``'s weights or seeded random ones; what it had to make up
    is appended to ``notes``."""
    from mmdet.registry import MODELS

    from rap_sam.utils.class_embeddings import class_embedding_path
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.runner_cli import (merge_model_options,
                                          unexpected_options)

    notes = [] if notes is None else notes
    cfg = read_config(config)
    merge_model_options(cfg, cfg_options)
    cfg.model.backbone.init_cfg = None
    head = cfg.model.panoptic_head
    name = head.get('ov_classifier_name')
    if name and not osp.isfile(
            class_embedding_path(name, head.get('ov_classifier_dir'))):
        notes.append(f'class embeddings {name}.pth not found: random '
                     'class embeddings (timing does not depend on them)')
        head.ov_classifier_name = None
    torch.manual_seed(seed)
    # A misspelt last key is a keyword the class does not take.
    with unexpected_options(cfg_options):
        model = MODELS.build(cfg.model)
    if checkpoint:
        from rap_sam.utils import load_model_weights
        load_model_weights(model, checkpoint)
    else:
        randomize_(model, seed)
        notes.append('random weights (seeded)')
    return model.eval()


def build_mask2former(seed: int) -> nn.Module:
    """mmdet's Mask2Former R50 panoptic, from the config file mmdet ships."""
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    root = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
    cfg = Config.fromfile(osp.join(root, MASK2FORMER_CONFIG))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    randomize_(model, seed)
    return model.eval()


class Variant(NamedTuple):
    """An inference setting of RAP-SAM: a mode of
    :func:`rap_sam.deploy.prepare` on the torch backend, or the model's
    export (``mode='export'``) on a runtime backend, with the
    post-processing ``post`` (:data:`rap_sam.deploy.prepare.POSTS`)."""
    mode: str
    precision: str = 'fp32'
    compile: bool = False
    backend: str = 'torch'
    post: str = 'exact'

    @property
    def name(self) -> str:
        """``'reference'``, ``'fast'``, ``'fast-bf16'``, ``'fast-compile'``,
        ``'onnxruntime'``, ``'openvino-int8'``, ``'openvino-int8-half'``
        ..."""
        parts = [self.mode if self.backend == 'torch' else self.backend]
        if self.precision != 'fp32':
            parts.append(self.precision)
        if self.compile:
            parts.append('compile')
        if self.post != 'exact':
            parts.append(self.post)
        return '-'.join(parts)


def variants(
    modes: Sequence[str],
    precisions: Sequence[str] = ('fp32', ),
    compile: bool = False,
    backends: Sequence[str] = BACKENDS[:1],
    posts: Sequence[str] = ('exact', )
) -> List[Variant]:
    """Every variant a benchmark run asks for, runnable here or not (see
    :func:`skip_reason`): on torch each of ``modes`` in fp32, the fast mode
    in every other precision, and with ``compile`` the fp32 fast mode
    compiled too; on each runtime backend the export in every precision;
    each fast or export variant with every post-processing of ``posts``
    (the reference mode with the exact one only)."""
    out = []
    for backend in backends:
        if backend != 'torch':
            out += [
                Variant('export', p, False, backend, post) for p in precisions
                for post in posts
            ]
            continue
        out += [Variant(m) for m in modes if m != 'fast']
        for precision in precisions:
            if precision != 'fp32' or 'fast' in modes:
                out += [
                    Variant('fast', precision, post=post) for post in posts
                ]
        if compile:
            out.append(Variant('fast', 'fp32', True))
    return out


def skip_reason(variant: Variant,
                device: Union[str, torch.device] = 'cpu',
                task: str = 'image',
                machine: Optional[dict] = None) -> Optional[str]:
    """Why ``variant`` cannot run in this benchmark (None when it can):
    a combination that does not exist, a runtime that is not installed, a
    CPU without the instructions a precision needs."""
    machine = machine or {}
    device = torch.device(device)
    if variant.post != 'exact' and task == 'video':
        return (f"post={variant.post!r} is for images: a video model's clip "
                'linker reads exact per-query masks')
    lacks_bf16 = (
        device.type == 'cpu' and 'avx512_bf16' in machine
        and not (machine['avx512_bf16'] or machine.get('amx_bf16')))
    if variant.backend == 'torch':
        if reads_int8_folder(variant.precision):
            return (
                'torch has no int8 path here: int8 is post-training static '
                'quantization of the ONNX export (onnxruntime, openvino)')
        if runs_bf16(variant.precision) and lacks_bf16:
            # Not worth timing: a 3x3 conv took 12x its fp32 time on an
            # AVX2 EPYC, a 2048-square torch.mm 600x.
            return ('this CPU has neither AVX-512 BF16 nor AMX: torch '
                    'computes bf16 many times slower than fp32')
        return None
    if variant.backend not in RUNTIMES:
        return f'unknown backend {variant.backend!r}'
    if device.type != 'cpu':
        return (f'the {variant.backend} backend runs on the CPU here '
                f'(device {device})')
    if task == 'video':
        return 'the export has no clip graph: videos run on torch only'
    from .backends import BACKENDS as RUNTIME_CLASSES
    from .backends import BackendError, import_runtime
    runtime = RUNTIME_CLASSES[variant.backend]
    if variant.precision not in runtime.precisions:
        if variant.backend == 'onnxruntime' and variant.precision == 'bf16':
            return ('ONNX Runtime has no bfloat16 CPU kernels (MatMul, Conv, '
                    'Softmax ...): bf16 runs on openvino and torch')
        return (f'{variant.backend} runs {", ".join(runtime.precisions)}, '
                f'not {variant.precision}')
    if runs_bf16(variant.precision) and lacks_bf16:
        # OpenVINO would quietly compute in fp32: not a bf16 figure.
        return ('this CPU has neither AVX-512 BF16 nor AMX: OpenVINO would '
                'run fp32')
    module = dict(onnxruntime='onnxruntime', openvino='openvino')
    try:
        import_runtime(module[variant.backend], module[variant.backend],
                       variant.backend)
    except BackendError as err:
        return str(err)
    return None


def build_variant(model: nn.Module, variant: Variant) -> nn.Module:
    """A prepared copy of ``model`` (which stays as it is); torch variants
    only (runtime variants: :class:`RuntimeExports`)."""
    if variant.backend != 'torch':
        raise ValueError(f'{variant.name} runs an export, not a torch model: '
                         'use RuntimeExports')
    return prepare(
        copy.deepcopy(model), variant.mode, variant.precision, variant.compile,
        variant.post)


#: skimage's sample photos used to calibrate int8 (shipped with
#: scikit-image, no download), besides demo/demo.jpg.
CALIBRATION_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'camera')


def write_calibration_images(folder: str) -> List[str]:
    """Write int8 calibration photos to ``folder``: demo/demo.jpg and
    scikit-image's sample photos (:data:`CALIBRATION_PHOTOS`, those this
    scikit-image has). Returns what was written, as labels."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    written = []
    if osp.isfile(DEMO_IMAGE):
        img = cv2.imread(DEMO_IMAGE)
        if img is not None:
            cv2.imwrite(osp.join(folder, 'demo.jpg'), img)
            written.append('demo/demo.jpg')
    try:
        import skimage.data
    except ImportError:
        return written
    for name in CALIBRATION_PHOTOS:
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001  (a photo this version lacks)
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        cv2.imwrite(
            osp.join(folder, f'{name}.png'),
            np.ascontiguousarray(img[..., 2::-1]))  # RGB -> BGR
        written.append(f'skimage.data.{name}')
    return written


class ExportFailed(RuntimeError):
    """An export a runtime variant needs could not be made on this
    machine (the variant is skipped, with this message)."""


class RuntimeExports:
    """The export folders a run's runtime variants read, made once from the
    benchmarked model: fp32 (per shape, at the benchmark's input shape) and,
    when an int8 variant runs, int8 quantized from it (the image encoder;
    :func:`rap_sam.deploy.quantize.quantize_export`), calibrated on
    ``calib_dir`` or on :func:`write_calibration_images`. bf16 reads the
    fp32 folder, int8-bf16 the int8 one (runtime settings).

    Args:
        model (nn.Module): The model as built (a copy is prepared for
            export; ``model`` stays as it is).
        shape (tuple): ``(h, w)`` of the benchmark's image.
        work_dir (str): Where the folders are written (a temporary folder).
        notes (list): What was done is appended here, for the report.
        calib_dir (str, optional): int8 calibration images.
        calibration (str, optional): int8 activation ranges,
            ``'minmax'`` or ``'percentile'``
            (:data:`rap_sam.deploy.quantize.CALIBRATIONS`); default the
            export tool's, :data:`rap_sam.deploy.quantize.DEFAULT_CALIBRATION`.
        weight_bits (int): int8 weights' bits, 8 or 7
            (:data:`rap_sam.deploy.quantize.INT8_WEIGHT_BITS`).
    """

    def __init__(self,
                 model: nn.Module,
                 shape: Tuple[int, int],
                 work_dir: str,
                 notes: List[str],
                 calib_dir: Optional[str] = None,
                 calibration: Optional[str] = None,
                 weight_bits: int = 8):
        from .quantize import (CALIBRATIONS, DEFAULT_CALIBRATION,
                               check_weight_bits)
        calibration = calibration or DEFAULT_CALIBRATION
        if calibration not in CALIBRATIONS:
            raise ValueError(f'calibration must be one of '
                             f'{", ".join(CALIBRATIONS)}, got '
                             f'{calibration!r}')
        self.model = model
        self.shape = tuple(shape)
        self.work_dir = work_dir
        self.notes = notes
        self.calib_dir = calib_dir
        self.calibration = calibration
        self.weight_bits = check_weight_bits(weight_bits)
        self.seconds: Dict[str, float] = {}
        self._dirs: Dict[str, str] = {}
        self._failed: Dict[str, Exception] = {}

    def folder(self, precision: str) -> str:
        """The export folder a ``precision`` variant reads.

        Raises:
            UserError: a bad calibration folder.
            ExportFailed: the export or quantization failed here (e.g. out
                of memory); a second call raises it again without
                retrying.
        """
        key = 'int8' if reads_int8_folder(precision) else 'fp32'
        if key in self._failed:
            raise self._failed[key]
        if key in self._dirs:
            return self._dirs[key]
        try:
            return self._make(key)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001  (a runtime's own types)
            lines = str(err).strip().splitlines() or ['']
            self._failed[key] = ExportFailed(
                f'the {key} export failed here: {type(err).__name__}: '
                f'{lines[-1][:200]}')
            raise self._failed[key] from err

    def _make(self, key: str) -> str:
        start = time.perf_counter()
        if key == 'fp32':
            from .export import export_model
            path = osp.join(self.work_dir, 'export_fp32')
            export_model(self.model, path, shape=self.shape)
            self.notes.append(
                f'runtime variants run an fp32 ONNX export made now at '
                f'{self.shape[0]}x{self.shape[1]} (per shape; bf16 is '
                "OpenVINO's inference precision on it)")
        else:
            from .quantize import quantize_export
            calib = self.calib_dir
            if calib is None:
                calib = osp.join(self.work_dir, 'calibration')
                labels = write_calibration_images(calib)
                source = ', '.join(labels)
            else:
                source = calib
            path = quantize_export(
                self.folder('fp32'),
                'int8',
                calib,
                out_dir=osp.join(self.work_dir, 'export_int8'),
                calibration=self.calibration,
                weight_bits=self.weight_bits)
            self.notes.append(
                'int8: static QDQ quantization of the image encoder '
                f'(decoders fp32), {self.weight_bits}-bit weights, '
                f'{self.calibration} activation ranges '
                f'calibrated on {source} (written to a temporary folder)')
        self.seconds[key] = time.perf_counter() - start
        self._dirs[key] = path
        return path


# ----------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------
def load_image(shape: Tuple[int, int],
               path: Optional[str] = None,
               seed: int = 0) -> np.ndarray:
    """A BGR uint8 image of ``shape`` (h, w): ``path`` (default: the
    repository's demo/demo.jpg) resized, or seeded noise where no path is
    given and demo.jpg is missing.

    Raises:
        InputError: ``path`` given but not a readable image (the timing
            and accuracy depend on the content: never noise instead).
    """
    import cv2
    h, w = shape
    if path is None:
        img = cv2.imread(DEMO_IMAGE) if osp.isfile(DEMO_IMAGE) else None
        if img is None:
            rng = np.random.default_rng(seed)
            return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        from rap_sam.apis.inputs import read_image
        img = read_image(path)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def image_data(img: np.ndarray, prompts: Optional[torch.Tensor] = None):
    """One image's ``test_step`` batch, with ``prompts`` (boxes) if given."""
    return image_batch([img], None if prompts is None else [prompts])


def video_data(img: np.ndarray, num_frames: int):
    """A clip of ``num_frames`` frames, ``img`` shifted 8 px further right
    in each (so the frames differ)."""
    return video_batch(
        np.stack([np.roll(img, 8 * t, axis=1) for t in range(num_frames)]))


def click_boxes(h: int, w: int, num: int) -> torch.Tensor:
    """``num`` clicks spread over the image, as 6-px boxes."""
    from rap_sam.models.utils import clicks_to_boxes
    g = torch.Generator().manual_seed(num)
    clicks = torch.rand(
        num, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8]) + torch.tensor(
            [w * 0.1, h * 0.1])
    return clicks_to_boxes(clicks)


def preprocess(model: nn.Module, data: dict, device) -> dict:
    data = model.data_preprocessor(copy.deepcopy(data), False)
    return dict(
        inputs=data['inputs'].to(device), data_samples=data['data_samples'])


# ----------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------
class Clock:

    def __init__(self, device: torch.device):
        self.cuda = device.type == 'cuda'

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class StageTimer:
    """Forward hooks adding up the time spent in named submodules."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.totals: Dict[str, float] = {}
        self._start: Dict[str, float] = {}
        self.handles = []

    def attach(self, module: nn.Module, name: str) -> None:

        def pre(mod, args):
            self._start[name] = self.clock()

        def post(mod, args, out):
            elapsed = self.clock() - self._start.pop(name)
            self.totals[name] = self.totals.get(name, 0.) + elapsed

        # A module compiled by nn.Module.compile runs its hooks inside the
        # compiled call: traced, the clock calls break the graph in the
        # middle and the stage ran 8x slower (measured on a conv stack);
        # excluded from tracing they run eagerly at its two ends.
        self.handles.append(
            module.register_forward_pre_hook(torch.compiler.disable(pre)))
        self.handles.append(
            module.register_forward_hook(torch.compiler.disable(post)))

    def reset(self) -> None:
        self.totals = {}


def _stage_times(totals: Dict[str, float], start: float, pre: float,
                 end: float) -> Dict[str, float]:
    """Per-stage seconds of one run: ``pre`` (preprocessing), the stages
    timed in ``totals``, ``encoder`` (backbone and neck, or the encoder
    graph), ``post`` (the rest of the run: post-processing) and ``e2e``."""
    stages = dict(totals)
    stages['pre'] = pre - start
    stages['e2e'] = end - start
    if 'encoder' not in stages:
        stages['encoder'] = stages.get('backbone', 0.) + stages.get('neck', 0.)
    stages['post'] = stages['e2e'] - stages['pre'] - stages[
        'encoder'] - stages.get('head', 0.)
    return stages


def _click_parts(total: float, head: Optional[float]) -> Dict[str, float]:
    """A click's seconds, and its decoder and post-processing parts when
    the decoder was timed (a click with no prompt runs no head)."""
    if head is None:
        return dict(decode_cached=total)
    return dict(
        decode_cached=total,
        decode_cached_head=head,
        decode_cached_post=total - head)


class Runner:
    """One timed torch model: its data preprocessor and ``predict`` end to
    end, and its stages (forward hooks).

    Args:
        name (str): The variant's name.
        model (nn.Module): RAP-SAM (prepared) or Mask2Former.
        raw (dict): The unprocessed batch (:func:`image_data` ...); every
            run preprocesses a copy of it, timed.
        device (torch.device): Where the model is.
        task (str): ``'image'``, ``'prompt'`` (the samples carry clicks:
            ``features`` and ``decode`` are timed apart) or ``'video'``.
    """

    def __init__(self, name: str, model: nn.Module, raw: dict,
                 device: torch.device, task: str):
        self.name = name
        self.model = model
        self.raw = raw
        self.data = preprocess(model, raw, device)
        self.task = task
        self.clock = Clock(device)
        self.timer = StageTimer(self.clock)
        for stage in ('backbone', 'neck'):
            module = getattr(model, stage, None)
            if module is not None:
                self.timer.attach(module, stage)
        self.timer.attach(model.panoptic_head, 'head')
        self.times: Dict[str, List[float]] = {}
        self.last = None
        self._clicks = None

    def _batch(self) -> dict:
        # The preprocessor makes new tensors but writes into the samples
        # (and predict adds its results to them): fresh samples per run.
        return dict(
            inputs=list(self.raw['inputs']),
            data_samples=copy.deepcopy(self.raw['data_samples']))

    def run(self, record: bool = True):
        batch = self._batch()
        self.timer.reset()
        with torch.inference_mode():
            start = self.clock()
            data = self.model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            pre = self.clock()
            if self.task == 'prompt':
                feats = self.model.extract_feat(inputs)
                mid = self.clock()
                out = self.model.predict_from_feats(feats, samples)
                end = self.clock()
                extra = dict(features=mid - start, decode=end - mid)
            else:
                out = self.model.predict(inputs, samples)
                end = self.clock()
                extra = {}
        self.last = out
        if not record:
            return
        stages = _stage_times(self.timer.totals, start, pre, end)
        stages.update(extra)
        for key, value in stages.items():
            self.times.setdefault(key, []).append(value)

    def medians(self) -> Dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}

    def head_outputs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The head's class and mask logits (fp32) on the benchmark's
        input: what an export's decoder outputs."""
        with torch.inference_mode():
            feats = self.model.extract_feat(self.data['inputs'])
            cls, masks, _, _ = self.model.predict_head(
                feats, self.data['data_samples'])
        return cls.float(), masks.float()

    def set_clicks(self, boxes: Optional[torch.Tensor]) -> None:
        """Cache the image's features for :meth:`click`: decoding
        ``boxes`` (clicks as 6-px boxes at the input's scale), or the
        samples' own prompts (``--task prompt``) when None."""
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        samples = self.data['data_samples']
        if boxes is not None:
            sample = DetDataSample(metainfo=samples[0].metainfo)
            device = self.data['inputs'].device
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes.to(device),
                pb_labels=torch.ones(
                    len(boxes), dtype=torch.long, device=device))
            samples = [sample]
        with torch.inference_mode():
            self._clicks = (self.model.extract_feat(self.data['inputs']),
                            samples)

    def click(self) -> Dict[str, float]:
        """Seconds to decode the cached prompts on the cached features:
        ``decode_cached`` (the whole click), split into
        ``decode_cached_head`` (the head, timed by its forward hook) and
        ``decode_cached_post`` (the rest: post-processing)."""
        feats, samples = self._clicks
        self.timer.reset()
        with torch.inference_mode():
            start = self.clock()
            self.model.predict_from_feats(feats, samples)
            total = self.clock() - start
        return _click_parts(total, self.timer.totals.get('head'))


class DeployedRunner:
    """An export folder on a runtime, timed as
    :class:`rap_sam.apis.RapSAMPredictor` runs it: numpy / OpenCV
    preprocessing, the encoder and decoder graphs, and the torch model's
    own post-processing (:class:`RapSAMPostProcessor`, the same code as
    the torch variants').

    Args:
        name (str): The variant's name.
        model (DeployedModel): The export on its runtime.
        post (RapSAMPostProcessor): The post-processing.
        img (np.ndarray): The BGR uint8 image.
        task (str): ``'image'`` or ``'prompt'``.
        boxes (torch.Tensor, optional): ``--task prompt``: the prompts,
            ``[N, 4]`` at the input's scale.
    """

    def __init__(self,
                 name: str,
                 model,
                 post,
                 img: np.ndarray,
                 task: str,
                 boxes: Optional[torch.Tensor] = None):
        self.name = name
        self.model = model
        self.post = post
        self.img = img
        self.task = task
        self.boxes = boxes
        self.clock = Clock(torch.device('cpu'))
        self.times: Dict[str, List[float]] = {}
        self.last = None
        self._clicks = None

    def _sample(self, meta: dict, boxes: Optional[torch.Tensor] = None):
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        sample = DetDataSample(metainfo=dict(meta, img_id=0))
        if boxes is not None:
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes,
                pb_labels=torch.ones(len(boxes), dtype=torch.long))
        return sample

    def _decode(self, feats, meta, boxes=None):
        """-> (head outputs as tensors, results); the decoder graph, then
        the post-processing."""
        sample = self._sample(meta, boxes)
        if boxes is None:
            cls, masks = self.model.decode_panoptic(feats)
            mid = self.clock()
            cls, masks = torch.from_numpy(cls), torch.from_numpy(masks)
            out = self.post.panoptic(cls, masks, [sample])
        else:
            cls, masks, iou = self.model.decode_prompts(
                feats, boxes.numpy(), meta)
            mid = self.clock()
            cls, masks = torch.from_numpy(cls), torch.from_numpy(masks)
            out = self.post.prompts(cls, masks, torch.from_numpy(iou),
                                    [sample])
        return mid, out

    def run(self, record: bool = True):
        boxes = self.boxes if self.task == 'prompt' else None
        with torch.inference_mode():
            start = self.clock()
            image, meta = self.model.preprocess(self.img)
            pre = self.clock()
            feats = self.model.encode(image)
            encoded = self.clock()
            decoded, out = self._decode(feats, meta, boxes)
            end = self.clock()
        self.last = out
        if not record:
            return
        stages = _stage_times(
            dict(encoder=encoded - pre, head=decoded - encoded), start, pre,
            end)
        if self.task == 'prompt':
            stages.update(features=encoded - start, decode=end - encoded)
        for key, value in stages.items():
            self.times.setdefault(key, []).append(value)

    medians = Runner.medians

    def head_outputs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        image, meta = self.model.preprocess(self.img)
        feats = self.model.encode(image)
        if self.task == 'prompt':
            cls, masks, _ = self.model.decode_prompts(feats,
                                                      self.boxes.numpy(), meta)
        else:
            cls, masks = self.model.decode_panoptic(feats)
        return torch.from_numpy(cls), torch.from_numpy(masks)

    def set_clicks(self, boxes: Optional[torch.Tensor]) -> None:
        image, meta = self.model.preprocess(self.img)
        boxes = self.boxes if boxes is None else boxes
        self._clicks = (self.model.encode(image), meta, boxes)

    def click(self) -> Dict[str, float]:
        """As :meth:`Runner.click`: the decoder graph, then the
        post-processing."""
        feats, meta, boxes = self._clicks
        with torch.inference_mode():
            start = self.clock()
            mid, _ = self._decode(feats, meta, boxes)
            total = self.clock() - start
        return _click_parts(total, mid - start)


def time_interleaved(runners: Sequence[Union[Runner, DeployedRunner]],
                     warmup: int, repeats: int) -> None:
    """``warmup`` untimed runs of each, then ``repeats`` rounds of one
    timed run of each."""
    for runner in runners:
        for _ in range(warmup):
            runner.run(record=False)
    for _ in range(repeats):
        for runner in runners:
            runner.run()


#: Seconds between two timed clicks: a user's clicks are that far apart
#: at least, and the thread pools of the runner before (OpenMP's, ONNX
#: Runtime's) stop spinning on the cores meanwhile instead of slowing the
#: next runner's click (measured: 1-30 ms of CPU spun in the 50 ms after
#: a run).
CLICK_PAUSE_S = 0.05


def time_clicks(runners: Sequence[Union[Runner, DeployedRunner]],
                boxes: Optional[torch.Tensor],
                repeats: int,
                pause: float = CLICK_PAUSE_S) -> None:
    """Prompt decoding on cached features (SAM-style interactive use):
    per runner, features computed once, then one untimed decode and
    ``repeats`` interleaved rounds of one timed decode of ``boxes`` (the
    samples' own prompts when None), post-processing included, each
    ``pause`` seconds after the one before; the seconds go to
    ``runner.times['decode_cached']``, and its parts to
    ``'decode_cached_head'`` (the head or the decoder graph) and
    ``'decode_cached_post'`` (post-processing), which add up to it run by
    run."""
    for runner in runners:
        runner.set_clicks(boxes)
        runner.click()
    for _ in range(repeats):
        for runner in runners:
            time.sleep(pause)
            for key, value in runner.click().items():
                runner.times.setdefault(key, []).append(value)


# ----------------------------------------------------------------------
# complexity and memory
# ----------------------------------------------------------------------
class _HeadForward(nn.Module):

    def __init__(self, head, samples):
        super().__init__()
        self.head = head
        self.samples = samples

    def forward(self, x):
        return self.head(x, self.samples)


def count_flops(model: nn.Module, inputs: torch.Tensor, samples) -> dict:
    """GFLOPs per stage from mmengine's FlopAnalyzer (which, as fvcore,
    counts one multiply-add as one flop; ops it has no handle for, e.g.
    mmcv's kernels and gathers, count zero), counted on the CPU."""
    from mmengine.analysis import FlopAnalyzer

    if inputs.device.type != 'cpu':
        # The count does not depend on the device, but tracing turns sizes
        # into CPU tensors, which ops then meet with the GPU's (clamp(max=
        # w - 1) in the gather deformable conv).
        model = copy.deepcopy(model).cpu()
        inputs = inputs.cpu()
        samples = [sample.cpu() for sample in samples]

    def flops(module, args):
        analyzer = FlopAnalyzer(module, args)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total() / 1e9

    result = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        feats = model.backbone(inputs)
        result['backbone'] = flops(model.backbone, (inputs, ))
        if getattr(model, 'neck', None) is not None:
            result['neck'] = flops(model.neck, (tuple(feats), ))
            feats = model.neck(feats)
        result['head'] = flops(
            _HeadForward(model.panoptic_head, samples), (feats, ))
    result['total'] = sum(result.values())
    return result


def peak_memory_mb(runner: Runner, device: torch.device) -> Optional[float]:
    """Peak tensor memory of one predict beyond what was allocated before
    it: the CUDA allocator's peak on GPUs; on CPUs the running sum of the
    allocations and frees the torch profiler records, in time order (op
    granularity). None for a runtime (the profiler does not see its
    allocations)."""
    if isinstance(runner, DeployedRunner):
        return None
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.run(record=False)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        runner.run(record=False)
    current = peak = 0
    for event in sorted(p.events(), key=lambda e: e.time_range.start):
        current += (
            event.cpu_memory_usage
            if event.name == '[memory]' else event.self_cpu_memory_usage)
        peak = max(peak, current)
    return peak / 2**20


# ----------------------------------------------------------------------
# agreement of a variant with another
# ----------------------------------------------------------------------
def compare_results(ours, reference) -> dict:
    """Agreement of predictions: panoptic pixels (the same id, and the same
    class), instances (in the same order: labels, scores, masks; and
    matched one to one by mask IoU, as
    :func:`rap_sam.deploy.accuracy.match_instances` does for approximate
    modes, whose instances may change order)."""
    from .accuracy import match_instances, panoptic_class_agreement
    out = {}
    a, b = ours[0], reference[0]
    if 'pred_panoptic_seg' in b:
        pa, pb = a.pred_panoptic_seg.sem_seg, b.pred_panoptic_seg.sem_seg
        out['panoptic_pixel_agreement'] = (pa == pb).float().mean().item()
        out['panoptic_class_agreement'] = panoptic_class_agreement(pb, pa)
    if 'pred_instances' in b:
        ia, ib = a.pred_instances, b.pred_instances
        out['instances'] = [len(ia), len(ib)]
        if len(ia) == len(ib) and len(ib) > 0:
            out['instance_labels_equal'] = bool(
                torch.equal(ia.labels, ib.labels))
            out['instance_scores_max_abs_diff'] = (
                ia.scores - ib.scores).abs().max().item()
            ma, mb = ia.masks.bool(), ib.masks.bool()
            inter = (ma & mb).flatten(1).sum(1).float()
            union = (ma | mb).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), 1.)
            out['instance_mask_iou_min'] = iou.min().item()
            out['instance_mask_pixel_agreement'] = (
                ma == mb).float().mean().item()
        if len(ib) > 0 and 'labels' in ib:
            match = match_instances(ib, ia)
            out['instances_kept'] = match['kept']
            out['kept_mask_iou_mean'] = match['mean_iou']
    return out


def head_output_error(ours, reference) -> dict:
    """Largest error of the head's class and mask logits relative to the
    reference's magnitudes, both runners (torch or runtime) fed the same
    image."""
    (ca, ma), (cb, mb) = ours.head_outputs(), reference.head_outputs()
    return dict(
        class_logits_rel_err=((ca - cb).abs().max() /
                              cb.abs().max().clamp(min=1e-6)).item(),
        mask_logits_rel_err=((ma - mb).abs().max() /
                             mb.abs().max().clamp(min=1e-6)).item(),
        mask_sign_agreement=((ma > 0) == (mb > 0)).float().mean().item())


# ----------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator(trim_threshold: int = (1 << 31) - 1) -> bool:
    """Keep freed memory in the process (glibc only): no mmap'd blocks and
    no trimming below ``trim_threshold`` bytes. Large temporaries are then
    reused instead of page-faulted in anew for every forward pass, which on
    a VM costs as much as the arithmetic of an elementwise op. Returns
    whether glibc accepted the settings. Process-wide: it speeds up every
    model in the process alike."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1) and ok
    return ok


def machine_info(device: torch.device) -> dict:
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine())
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    if flags is not None:
        info['cpu_cores'] = os.cpu_count()
        info['avx512'] = 'avx512f' in flags
        info['avx512_bf16'] = 'avx512_bf16' in flags
        info['amx_bf16'] = 'amx_bf16' in flags
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        # PyTorch lets convolutions (not matrix products) use TF32 by
        # default: fp32 outputs then differ from the CPU's by about 1e-3.
        info['tf32_conv'] = torch.backends.cudnn.allow_tf32
        info['tf32_matmul'] = torch.backends.cuda.matmul.allow_tf32
    return info


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def speedups(medians: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """Speed ratios from each variant's median stage times: every variant
    against ``reference`` end to end, and against ``mask2former`` end to
    end and over the network's forward (encoder and head: backbone, neck
    and decoder)."""
    ratios = {}
    if 'reference' in medians:
        for name, med in medians.items():
            if name not in ('reference', 'mask2former'):
                ratios[f'{name}_vs_reference_e2e'] = medians['reference'][
                    'e2e'] / med['e2e']
    if 'mask2former' in medians:
        m2f = medians['mask2former']
        # Mask2Former's pixel decoder is in its head.
        m2f_fwd = m2f.get('encoder', 0.) + m2f.get('head', 0.)
        for name, med in medians.items():
            if name == 'mask2former':
                continue
            fwd = med.get('encoder', 0.) + med.get('head', 0.)
            ratios[f'{name}_vs_mask2former_e2e'] = m2f['e2e'] / med['e2e']
            ratios[f'{name}_vs_mask2former_forward'] = m2f_fwd / fwd
    return ratios


def summarise(model: nn.Module, results) -> dict:
    """What the post-processing produced (it depends on the weights), for
    the first image (the last frame of a clip)."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from mmdet.structures import TrackDataSample
    sample = results[0]
    if isinstance(sample, TrackDataSample):
        sample = sample[len(sample) - 1]
    out = {}
    if 'pred_panoptic_seg' in sample:
        ids = torch.unique(sample.pred_panoptic_seg.sem_seg)
        background = model.panoptic_fusion_head.num_classes
        out['panoptic_segments'] = int((ids % INSTANCE_OFFSET
                                        != background).sum())
    for key in ('pred_instances', 'pred_track_instances'):
        if key in sample:
            out['instances'] = len(sample.get(key))
    return out


# ----------------------------------------------------------------------
# the machine's limit: how fast the network could be here at best
# ----------------------------------------------------------------------
#: Matrix products ``(m, k, n)`` timed for the roofline: a square GEMM,
#: and the neck's 3x3 convolution at 800x1344 as an im2col product
#: (200 * 336 stride-4 pixels x 9 * 128 inputs -> 128 outputs); GPUs also
#: get a larger square, which a 2048 one does not fill.
ROOFLINE_SHAPES = ((2048, 2048, 2048), (67200, 1152, 128))
ROOFLINE_SHAPES_CUDA = ((8192, 8192, 8192), ) + ROOFLINE_SHAPES
ROOFLINE_DTYPES = dict(
    fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)


def matmul_throughput(device: Union[str, torch.device],
                      precision: str = 'fp32',
                      shapes: Optional[Sequence[Tuple[int, int, int]]] = None,
                      repeats: int = 3) -> Dict[str, float]:
    """GMAC/s of ``torch.mm`` in ``precision`` on ``device`` with the
    threads torch uses now, per shape ``'MxKxN'``: the best of ``repeats``
    timed products after an untimed one (the best, as a peak is what the
    machine can do, not what load leaves of it)."""
    device = torch.device(device)
    if shapes is None:
        shapes = (
            ROOFLINE_SHAPES_CUDA if device.type == 'cuda' else ROOFLINE_SHAPES)
    dtype = ROOFLINE_DTYPES[precision]
    clock = Clock(device)
    out = {}
    for m, k, n in shapes:
        # The values do not matter, only that they are finite and dense.
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        c = torch.empty(m, n, device=device, dtype=dtype)
        torch.mm(a, b, out=c)
        best = float('inf')
        for _ in range(repeats):
            start = clock()
            torch.mm(a, b, out=c)
            best = min(best, clock() - start)
        out[f'{m}x{k}x{n}'] = m * k * n / 1e9 / best
        del a, b, c
    return out


def measure_roofline(device: Union[str, torch.device],
                     precisions: Sequence[str] = ('fp32', ),
                     repeats: int = 3) -> dict:
    """The machine's matrix-multiply peak (:func:`matmul_throughput`, best
    over the shapes) in fp32 and in each of ``precisions`` that
    ``torch.mm`` has (bf16, fp16); a precision without one (int8) or whose
    product fails on this device is listed in ``'skipped'`` with the
    reason."""
    device = torch.device(device)
    gmacs, skipped = {}, {}
    for precision in dict.fromkeys(('fp32', *precisions)):
        if precision not in ROOFLINE_DTYPES:
            skipped[precision] = (
                f'no {precision} torch.mm to measure its peak with')
            continue
        if (precision == 'bf16' and device.type == 'cpu'
                and cpu_has_bf16() is False):
            # Without bf16 kernels a 2048-square product takes a minute.
            skipped[precision] = ('this CPU has neither AVX-512 BF16 nor '
                                  'AMX: no bf16 peak to measure')
            continue
        try:
            gmacs[precision] = matmul_throughput(
                device, precision, repeats=repeats)
        except RuntimeError as err:  # a dtype this device has no mm for
            lines = str(err).strip().splitlines() or ['']
            skipped[precision] = f'torch.mm failed: {lines[0][:200]}'
    return dict(
        device=str(device),
        threads=torch.get_num_threads(),
        repeats=repeats,
        gmac_per_s=gmacs,
        peak_gmac_per_s={
            p: max(v.values())
            for p, v in gmacs.items()
        },
        skipped=skipped)


def best_of_rooflines(runs: Sequence[dict]) -> dict:
    """Several :func:`measure_roofline` runs of one benchmark (before and
    after its timed rounds) as one: each shape's best throughput, so that
    load on the machine at one moment does not lower the peak."""
    out = copy.deepcopy(runs[0])
    for run in runs[1:]:
        for precision, shapes in run['gmac_per_s'].items():
            best = out['gmac_per_s'].setdefault(precision, {})
            for shape, value in shapes.items():
                best[shape] = max(best.get(shape, 0.), value)
            out['skipped'].pop(precision, None)
    out['repeats'] = sum(run['repeats'] for run in runs)
    out['peak_gmac_per_s'] = {
        p: max(v.values())
        for p, v in out['gmac_per_s'].items()
    }
    return out


def roofline_bounds(measured: dict, model_gmac: Optional[float],
                    precisions: Dict[str, str],
                    medians: Dict[str, Dict[str, float]]) -> dict:
    """What the peaks in ``measured`` (:func:`measure_roofline`) allow:
    the network's floor in each precision (``model_gmac`` / peak: the
    fastest the encoder and decoder can be when every multiply-add runs at
    the peak) and, per variant (``precisions``: name -> precision), the
    floor against its measured network time and, when ``medians`` holds
    ``'mask2former'``, the largest speed-up over it this machine allows:
    Mask2Former's end to end over (floor + the variant's measured
    preprocessing and post-processing), next to the measured one.

    A variant whose network ran faster than the floor shows that the peak
    was measured low (other jobs took the cores while ``torch.mm`` ran):
    it is named in ``'below_floor'``, and the bounds are then no limits.

    ``model_gmac`` None (not counted): every floor is unknown."""
    peaks = measured['peak_gmac_per_s']
    out = dict(
        measured,
        model_gmac=model_gmac,
        floor_s=None,
        variants={},
        below_floor=[])
    if model_gmac is not None:
        out['floor_s'] = {p: model_gmac / peak for p, peak in peaks.items()}
    m2f = medians.get('mask2former')
    for name, precision in precisions.items():
        med = medians[name]
        entry = dict(
            precision=precision,
            network_s=med.get('encoder', 0.) + med.get('head', 0.))
        floor = (out['floor_s'] or {}).get(precision)
        if floor is None:
            entry['floor_s'] = None
            entry['why_no_floor'] = (
                "the model's GMAC were not counted (--no-flops, or the "
                'count failed)'
                if model_gmac is None else measured['skipped'].get(
                    precision, f'no {precision} peak measured'))
            out['variants'][name] = entry
            continue
        entry['floor_s'] = floor
        entry['network_vs_floor'] = entry['network_s'] / floor
        if entry['network_s'] < floor:
            out['below_floor'].append(name)
        entry['bound_s'] = floor + med.get('pre', 0.) + med.get('post', 0.)
        if m2f is not None:
            entry['max_vs_mask2former'] = m2f['e2e'] / entry['bound_s']
            entry['vs_mask2former'] = m2f['e2e'] / med['e2e']
        out['variants'][name] = entry
    return out


# ----------------------------------------------------------------------
# post-processing: exact against approximate
# ----------------------------------------------------------------------
def post_agreement(exact: dict, approx: dict, num_classes: int) -> dict:
    """How close one image's approximate fusion results are to the exact
    ones (fusion head results: ``pan_results`` and ``ins_results``).

    Returns:
        dict: ``instances``: :func:`~rap_sam.deploy.accuracy.
        match_instances` of the exact instances with a non-empty mask
        (an empty mask matches nothing by IoU) among all approximate ones;
        ``segments``: the same for the panoptic segments;
        ``panoptic_agreement``: pixels with the same panoptic class;
        ``max_score_diff``: of the instance scores, row by row.
    """
    from .accuracy import (match_instances, panoptic_class_agreement,
                           panoptic_segments)
    ins_e, ins_a = exact['ins_results'], approx['ins_results']
    nonempty = ins_e.masks.flatten(1).any(1)
    pan_e = exact['pan_results'].sem_seg[0]
    pan_a = approx['pan_results'].sem_seg[0]
    return dict(
        instances=match_instances(ins_e[nonempty], ins_a),
        segments=match_instances(
            panoptic_segments(pan_e, num_classes),
            panoptic_segments(pan_a, num_classes)),
        panoptic_agreement=panoptic_class_agreement(pan_e, pan_a),
        max_score_diff=float(
            (ins_e.scores - ins_a.scores).abs().max()) if len(ins_e) else 0.)


def time_post_modes(shape: Tuple[int, int],
                    outputs: Sequence[str] = ('objects', 'random'),
                    repeats: int = 7,
                    warmup: int = 1,
                    seed: int = 0,
                    ori_shape: Optional[Tuple[int, int]] = None,
                    post: str = 'half') -> List[dict]:
    """Time the exact fusion head (``ScoredPanopticFusionHead`` as
    configured) against the approximate post-processing ``post`` on the
    seeded head outputs of ``tools/analysis/postprocess_benchmark.py``
    (:mod:`rap_sam.testing.fusion_outputs`), interleaved: one run of each
    per round, medians over the rounds.

    Returns:
        list[dict]: Per kind of outputs: ``outputs``, ``num_instances``
        and ``num_segments`` (the exact results'), ``median_s`` and
        ``median_cpu_s`` (``exact`` and ``post``), ``speedup`` (exact /
        post, wall), ``cpu_speedup`` and :func:`post_agreement`'s
        figures.
    """
    from rap_sam.apis.inputs import InputError
    from rap_sam.models.seg_heads import ScoredPanopticFusionHead
    from rap_sam.testing.fusion_outputs import (coco_fusion_kwargs,
                                                fusion_sample, seeded_outputs,
                                                time_heads)
    from .prepare import POSTS, post_head
    if post not in POSTS or post == 'exact':
        raise InputError(f'--post {post}: choose one of '
                         f'{", ".join(p for p in POSTS if p != "exact")}')
    sample = fusion_sample(shape, ori_shape, outputs)
    exact = ScoredPanopticFusionHead(**coco_fusion_kwargs())
    heads = dict(exact=exact, post=post_head(exact, post))
    results = []
    for kind in outputs:
        cls, masks = seeded_outputs(kind, shape, seed)
        got, wall, cpu = time_heads(heads, cls, masks, sample, warmup, repeats)
        med = {v: statistics.median(t) for v, t in wall.items()}
        med_cpu = {v: statistics.median(t) for v, t in cpu.items()}
        results.append(
            dict(
                outputs=kind,
                num_instances=len(got['exact']['ins_results']),
                num_segments=len(got['exact']['pan_results'].segments),
                median_s=med,
                median_cpu_s=med_cpu,
                samples_s=wall,
                speedup=med['exact'] / med['post'],
                cpu_speedup=med_cpu['exact'] / med_cpu['post'],
                **post_agreement(got['exact'], got['post'],
                                 heads['exact'].num_classes)))
    return results
