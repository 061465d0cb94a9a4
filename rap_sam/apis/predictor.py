"""Load RAP-SAM once; segment images, videos and click / box prompts."""
import hashlib
import logging
import numbers
import os
import os.path as osp
import shutil
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.datasets.transforms import PackDetInputs, Resize
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import encode_mask_results
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from rap_sam.deploy.backends import BACKENDS as RUNTIME_BACKENDS
from rap_sam.deploy.backends import reads_int8_folder
from rap_sam.deploy.prepare import POSTS, use_post
from rap_sam.models.layers import LowRankFeatureMap
from rap_sam.utils.checkpoint import load_model_weights
from rap_sam.utils.class_embeddings import class_embedding_path
from rap_sam.utils.config_file import (ConfigFileError, config_test_scale,
                                       read_config)
from rap_sam.utils.cpu_features import cpu_has_bf16, no_bf16_notice
from rap_sam.utils.user_errors import UserNotice
from rap_sam.visualization import config_dataset_meta
from .inputs import (InputError, check_device, check_int, check_number,
                     check_pixels, check_prompts, max_pixels_limit, read_image)
from .prompt_tracking import scale_prompts, track_prompt
from .video import check_chunk_frames, clip_linker, track_video

RANDOM_WEIGHTS_WARNING = (
    '\n' + '!' * 72 + '\n'
    '!!  No --weights given: RAP-SAM runs with RANDOM weights. The output\n'
    '!!  shows that the pipeline works, not what the model can do. Pass the\n'
    '!!  released rapsam_r50_12e.pth (or your own checkpoint) for real '
    'masks.\n' + '!' * 72)


def _load_config(config) -> Config:
    if isinstance(config, Config):
        return config.copy()
    if not isinstance(config, (str, os.PathLike)):
        raise InputError('config must be a config file path or an mmengine '
                         f'Config, got {type(config).__name__}.')
    path = os.fspath(config)
    try:
        cfg = read_config(path)
    except ConfigFileError as err:
        raise InputError(str(err)) from err  # the API's one error type
    if not isinstance(cfg.get('model'), dict) or 'panoptic_head' not in \
            cfg.model:
        raise InputError(f'{path} is not a RAP-SAM config (no '
                         'model.panoptic_head): use one of configs/rap_sam/.')
    return cfg


def _palette(count: int) -> list:
    """Seeded colours for classes without a dataset palette."""
    rng = np.random.default_rng(0)
    return [
        tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(count)
    ]


#: The export cache of runtime backends (RapSAMPredictor(backend=...)).
EXPORT_CACHE_ENV = 'RAP_SAM_EXPORT_CACHE'
DEFAULT_EXPORT_CACHE = osp.join('~', '.cache', 'rap_sam', 'exports')


def _export_key(model, cfg: Config, scale) -> str:
    """A hash of what an export depends on: every weight and buffer (the
    vocabulary's too), the model config, the scale, the exporter's versions
    and the package's code (an edited model or exporter exports anew)."""
    import onnx
    digest = hashlib.sha256()
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for folder, dirs, files in sorted(os.walk(package)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith('.py'):
                with open(osp.join(folder, name), 'rb') as f:
                    digest.update(f.read())
    digest.update(
        repr((cfg.model.to_dict()
              if hasattr(cfg.model, 'to_dict') else dict(cfg.model),
              tuple(scale), torch.__version__, onnx.__version__)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _check_scale(scale, max_pixels: int) -> Tuple[int, int]:
    if not isinstance(scale, (tuple, list)) or len(scale) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool)
            for v in scale):
        raise InputError(f'scale must be two numbers (width, height), got '
                         f'{scale!r}.')
    if any(v != int(v) or v < 1 for v in scale):
        raise InputError(f'scale must be two whole numbers >= 1 (width, '
                         f'height), got {tuple(scale)}.')
    width, height = (int(v) for v in scale)
    check_pixels(width, height, 'The scale', max_pixels)
    return width, height


#: Where the model runs: the PyTorch model itself, or its exported graphs
#: on a runtime (rap_sam.deploy.backends).
BACKENDS = ('torch', ) + tuple(RUNTIME_BACKENDS)
#: Precisions per backend. bf16 and fp16 are torch.autocast (bf16 on CPUs
#: with AVX-512 BF16 / AMX, fp16 on GPUs); each runtime says what it runs
#: (bf16 is OpenVINO's inference precision; int8 runs graphs quantized from
#: an fp32 export, tools/deploy/export.py --precision int8 --calib DIR, so
#: it comes from an export folder, from_export; int8-bf16 runs them on
#: OpenVINO with the float operations in bf16). Approximate, opt-in.
PRECISIONS = {
    'torch': ('fp32', 'bf16', 'fp16'),
    **{
        name: cls.precisions
        for name, cls in RUNTIME_BACKENDS.items()
    }
}


def _check_post(post) -> None:
    if post not in POSTS:
        raise InputError(f'post must be one of {", ".join(POSTS)}, got '
                         f'{post!r}.')


def _check_backend(backend, precision, backends=BACKENDS) -> None:
    """``backends``: those the caller can run, named where the precision
    runs instead."""
    if backend not in BACKENDS:
        raise InputError(f'backend must be one of {", ".join(BACKENDS)}, '
                         f'got {backend!r}.')
    known = sorted({p for ps in PRECISIONS.values() for p in ps})
    if precision not in known:
        raise InputError(f'precision must be one of {", ".join(known)}, '
                         f'got {precision!r}.')
    if precision not in PRECISIONS[backend]:
        others = [b for b in backends if precision in PRECISIONS[b]]
        where = (', '.join(others) if others else
                 'torch only (RapSAMPredictor with a config and checkpoint)')
        raise InputError(
            f'The {backend} backend runs {", ".join(PRECISIONS[backend])}, '
            f'not {precision}; {precision} runs on {where}.')


def _check_threads(num_threads) -> Optional[int]:
    if num_threads is None:
        return None
    num_threads = check_int(num_threads, 'num_threads')
    cores = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else (os.cpu_count() or 1)
    # Far more threads than cores only wait on each other (ONNX Runtime
    # with 1000 threads ran for minutes where 2 took seconds).
    if num_threads > 4 * cores:
        raise InputError(
            f'num_threads {num_threads} is far above the {cores} cores this '
            f'process may use: give at most {4 * cores} (threads beyond the '
            'cores only slow the runtimes down).')
    return num_threads


# A prompt batch's float masks at the original size are at most this many
# values (256 MB), so a batch on a large image holds fewer prompts.
PROMPT_BATCH_PIXELS = 64 * 2**20


class RapSAMPredictor:
    """RAP-SAM loaded once: panoptic images, tracked video instances, and
    masks from clicks and boxes.

    Images and frames are BGR uint8 arrays (OpenCV's order) or file paths.
    Coordinates and masks are always in the original image's pixels; the
    model itself sees the image resized to ``scale`` (keep-ratio).

    Args:
        config (str | Config): An eval config:
            ``configs/rap_sam/eval_rap_sam_coco.py`` for images and prompts,
            ``configs/rap_sam/eval_rap_sam_yt19.py`` for videos (its
            YouTube-VIS classes and clip linking; an image config tracks
            its thing classes).
        weights (str, optional): A checkpoint. Without one the model has
            random weights and a loud warning says so.
        device (str, optional): ``cpu``, ``cuda``, ``cuda:1`` ...; the GPU
            when there is one, else the CPU.
        scale (tuple, optional): ``(w, h)`` the images are resized to fit,
            instead of the config's test scale ((1333, 800) for COCO,
            (1280, 736) for YouTube-VIS); smaller is faster and coarser.
        classes (list[str] | str, optional): Your own vocabulary instead of
            the config's dataset classes: names, each optionally with
            synonyms (``'cup,mug'``), or a text file with one per line. Its
            CLIP text embeddings are made once (OpenCLIP
            ``convnext_large_d_320``, weights found offline, see
            ``tools/gen_cls.py``) and cached by content in the
            class-embedding directory; outputs then carry these names.
        num_things (int, optional): With ``classes``: the first
            ``num_things`` are things (instances), the rest stuff; all are
            things by default.
        clip_checkpoint (str, optional): With ``classes``: a local OpenCLIP
            checkpoint to encode them with.
        optimize (bool): Apply the exact inference optimisations
            (:func:`rap_sam.deploy.prepare` in ``'fast'`` mode: BatchNorms
            folded, channels-last, low-rank neck output), which give the
            same outputs to float rounding, faster; False runs the model
            as built (the reference's computation).
        max_pixels (int, optional): The largest image (width x height) read
            or segmented: files are checked from their header before they
            are decoded, arrays and video frames by their shape; larger
            ones raise :class:`InputError`. Default: the environment
            variable ``RAP_SAM_MAX_PIXELS``, else 40 megapixels (see
            :func:`rap_sam.apis.inputs.max_pixels_limit`).
        prompt_batch_size (int): Prompts decoded together by
            :meth:`predict_prompts` at most (64); more prompts run in
            batches, with the same results, so memory stays bounded.
        backend (str): ``'torch'`` (the model itself), ``'onnxruntime'``
            or ``'openvino'``: the model is exported (standard ONNX graphs,
            ``rap_sam.deploy``) into a cache folder keyed by its weights,
            config and scale (``RAP_SAM_EXPORT_CACHE``, default
            ``~/.cache/rap_sam/exports``) and run there on the CPU; the
            results are made by the same post-processing code. To run a
            folder exported beforehand, without config or checkpoint, use
            :meth:`from_export`. Videos run on torch only.
        precision (str): ``'fp32'`` (exact: every backend gives the torch
            model's results to float rounding); ``'bf16'`` (torch autocast,
            or OpenVINO's bfloat16 inference) and ``'fp16'`` (torch
            autocast, GPUs) are approximate and opt-in. ``'int8'`` (and
            OpenVINO's ``'int8-bf16'``) needs calibration images: export
            with ``tools/deploy/export.py --precision int8 --calib DIR``
            and use :meth:`from_export`.
        num_threads (int, optional): Threads of a runtime backend (its
            default, all cores, when None); torch keeps its own setting.
        post (str): The post-processing of images: ``'exact'`` (mmdet's
            fusion results, bit for bit) or ``'half'`` (approximate, opt-in:
            the fusion at half the result's height and width, masks and
            panoptic map repeated 2x2; 2-3x faster, see docs/deploy.md).
            Every backend; ``'half'`` needs ``optimize=True`` on torch and
            an image config (a video model's clip linker reads exact
            masks). Clicks and boxes do not pass through it.

    Raises:
        InputError: a missing or unreadable config or checkpoint file, a
            device that is not there, a bad ``scale`` and any other bad
            keyword.
    """

    def __init__(self,
                 config: Union[str, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 scale: Optional[Tuple[int, int]] = None,
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 num_things: Optional[int] = None,
                 clip_checkpoint: Optional[str] = None,
                 optimize: bool = True,
                 max_pixels: Optional[int] = None,
                 prompt_batch_size: int = 64,
                 backend: str = 'torch',
                 precision: str = 'fp32',
                 num_threads: Optional[int] = None,
                 post: str = 'exact'):
        # Every keyword is checked before the (slow) model is built.
        cfg = _load_config(config)
        _check_backend(backend, precision)
        _check_post(post)
        if post != 'exact' and backend == 'torch' and optimize is False:
            raise InputError(f'post {post!r} is an optimisation: it needs '
                             'optimize=True.')
        if backend != 'torch' and reads_int8_folder(precision):
            raise InputError(
                f'{precision} needs calibration images: export with '
                'tools/deploy/export.py CONFIG --checkpoint CKPT --out DIR '
                '--precision int8 --calib DIR_OF_IMAGES, then use '
                f'RapSAMPredictor.from_export(DIR, backend={backend!r}' +
                (f', precision={precision!r}).' if precision !=
                 'int8' else ').'))
        num_threads = _check_threads(num_threads)
        if backend == 'torch' and precision != 'fp32' and optimize is False:
            raise InputError(f'precision {precision!r} is an optimisation: '
                             'it needs optimize=True.')
        if backend != 'torch':
            if device is not None and str(device) != 'cpu':
                raise InputError(
                    f'The {backend} backend runs on the CPU (device '
                    f'{str(device)!r} given); use backend=\'torch\' for '
                    'GPUs.')
            device = 'cpu'
        self.device = check_device(device)
        self.backend = backend
        self.precision = precision
        self.post = post
        self.runtime = None  # DeployedModel on a runtime backend
        self.max_pixels = max_pixels_limit(max_pixels)
        if scale is not None:
            scale = _check_scale(scale, self.max_pixels)
        self.prompt_batch_size = check_int(prompt_batch_size,
                                           'prompt_batch_size')
        if not isinstance(optimize, bool):
            raise InputError(f'optimize must be True or False, got '
                             f'{optimize!r}.')
        if weights is not None:
            if not isinstance(weights, (str, os.PathLike)):
                raise InputError('weights must be a checkpoint file path, '
                                 f'got {type(weights).__name__}.')
            if not osp.isfile(weights):
                raise InputError(
                    f'Checkpoint file not found: {weights} (give the path of '
                    'a .pth file, e.g. the released rapsam_r50_12e.pth, or '
                    'leave weights / --weights out for random weights).')
        cfg.model.backbone.init_cfg = None
        head = cfg.model.panoptic_head
        if weights is None:
            warnings.warn(RANDOM_WEIGHTS_WARNING, UserNotice, stacklevel=2)
            name = head.get('ov_classifier_name')
            if name and not osp.isfile(
                    class_embedding_path(name, head.get('ov_classifier_dir'))):
                warnings.warn(
                    f'Class-embedding file {name}.pth not found: using random '
                    'class embeddings as well (see tools/gen_cls.py).',
                    UserNotice,
                    stacklevel=2)
                head.ov_classifier_name = None
        if cfg.model.get('test_cfg', {}).get('rle_masks'):
            # iter_video hands out a chunk of frames at a time, so dense
            # masks fit in memory and are what callers draw with.
            cfg.model.test_cfg.rle_masks = False
        self.cfg = cfg
        self.model = MODELS.build(cfg.model)
        if weights is None:
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)  # no per-parameter init table
            try:
                self.model.init_weights()
            finally:
                logger.setLevel(level)
        else:
            load_model_weights(self.model, weights)
        if classes is not None:
            self.dataset_meta = self._use_vocabulary(classes, num_things,
                                                     clip_checkpoint)
        else:
            self.dataset_meta = config_dataset_meta(
                cfg, self.model.num_classes, self.model.num_things_classes)
        self.model.to(self.device).eval()
        self.scale = tuple(scale) if scale else config_test_scale(cfg)
        if backend == 'torch':
            self._prepare(optimize, precision, post)
        else:
            from rap_sam.deploy.backends import DeployedModel
            from rap_sam.deploy.backends.post_processor import \
                RapSAMPostProcessor
            from rap_sam.deploy.deploy_spec import DeployFolderError
            export_dir = self._cached_export()
            try:
                self.runtime = DeployedModel(export_dir, backend, precision,
                                             num_threads)
            except DeployFolderError:
                # The cache's own entry, damaged (a graph cut short, a file
                # deleted): the advice to re-export could not be followed
                # for it. Made anew.
                shutil.rmtree(export_dir, ignore_errors=True)
                self.runtime = DeployedModel(self._cached_export(), backend,
                                             precision, num_threads)
            # The same post-processing, without the network's weights.
            self.model = RapSAMPostProcessor.from_model(self.model)
            use_post(self.model, post)
        self._init_pipeline()

    def _prepare(self, optimize: bool, precision: str, post: str) -> None:
        from rap_sam.deploy import prepare
        if (precision == 'bf16' and self.device.type == 'cpu'
                and cpu_has_bf16() is False):
            warnings.warn(
                no_bf16_notice(
                    precision, 'torch computes bf16 many times slower '
                    'than fp32'),
                UserNotice,
                stacklevel=3)
        prepare(
            self.model,
            'fast' if optimize else 'reference',
            precision=precision if optimize else 'fp32',
            post=post)
        head = self.model.panoptic_fusion_head
        if not optimize and hasattr(head, 'segments'):
            # The reference fusion head leaves its segment table out (the
            # reference code has none); the predictor's results carry it.
            head.segments = True

    def _cached_export(self) -> str:
        """Export the model (fp32, standard ONNX graphs, free height and
        width) into a folder of
        the export cache named by a hash of its config, weights and scale,
        or reuse that folder."""
        from rap_sam.deploy.export import export_model
        root = osp.expanduser(
            os.environ.get(EXPORT_CACHE_ENV, DEFAULT_EXPORT_CACHE))
        folder = osp.join(root, _export_key(self.model, self.cfg, self.scale))
        if osp.isfile(osp.join(folder, 'deploy.json')):
            return folder
        if osp.isdir(folder):  # an entry without its deploy.json: damaged
            shutil.rmtree(folder, ignore_errors=True)
        # export_model writes beside the folder and renames it into place:
        # an interrupted export never looks like a finished one. Free height
        # and width: every aspect ratio is padded as the torch model pads
        # it, so the results are the torch model's.
        export_model(
            self.model,
            folder,
            cfg=self.cfg,
            scale=self.scale,
            dynamic=True,
            class_names=self.dataset_meta['classes'],
            overwrite=True)
        return folder

    @classmethod
    def from_export(cls,
                    export_dir: str,
                    backend: str = 'onnxruntime',
                    precision: Optional[str] = None,
                    num_threads: Optional[int] = None,
                    max_pixels: Optional[int] = None,
                    prompt_batch_size: int = 64,
                    post: str = 'exact') -> 'RapSAMPredictor':
        """A predictor on a folder written by ``tools/deploy/export.py``
        (graphs and deploy.json): no config or checkpoint is read, the
        class names, scale, normalisation and thresholds are the folder's.

        Args:
            export_dir (str): The export folder.
            backend (str): ``'onnxruntime'`` or ``'openvino'``.
            precision (str, optional): The folder's (deploy.json) by
                default; on OpenVINO ``'bf16'`` may be asked of an fp32
                folder, and ``'int8-bf16'`` of an int8 one (its float
                operations in bfloat16: faster on CPUs with fast bfloat16,
                approximate, see docs/deploy.md).
            num_threads (int, optional): Threads per graph.
            max_pixels, prompt_batch_size, post: as for the constructor.

        Raises:
            InputError: a bad keyword; the export reader's UserError for a
                missing folder, deploy.json or graph, or a graph whose
                inputs or outputs do not match deploy.json (naming the
                file).
        """
        from rap_sam.deploy.backends import DeployedModel
        from rap_sam.deploy.backends.post_processor import RapSAMPostProcessor
        if backend == 'torch':
            raise InputError('from_export runs an export folder on a runtime '
                             '(onnxruntime or openvino); for torch give the '
                             'config and checkpoint to RapSAMPredictor.')
        _check_backend(backend, 'fp32' if precision is None else precision,
                       [b for b in BACKENDS if b != 'torch'])
        _check_post(post)
        if not isinstance(export_dir, (str, os.PathLike)):
            raise InputError('export_dir must be a folder path, got '
                             f'{type(export_dir).__name__}.')
        self = cls.__new__(cls)
        self.max_pixels = max_pixels_limit(max_pixels)
        self.prompt_batch_size = check_int(prompt_batch_size,
                                           'prompt_batch_size')
        self.runtime = DeployedModel(export_dir, backend, precision,
                                     _check_threads(num_threads))
        runtime = self.runtime
        self.device = torch.device('cpu')
        self.backend = backend
        self.precision = runtime.precision
        self.cfg = None
        names, things = runtime.class_names, runtime.num_things
        self.model = use_post(
            RapSAMPostProcessor(things,
                                len(names) - things, runtime.test_cfg), post)
        self.post = post
        self.dataset_meta = dict(
            classes=names,
            thing_classes=names[:things],
            stuff_classes=names[things:],
            palette=_palette(len(names)))
        self.scale = tuple(self.runtime.scale)
        self._init_pipeline()
        return self

    def _init_pipeline(self) -> None:
        self.resize = Resize(scale=self.scale, keep_ratio=True)
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'), self.resize,
            PackDetInputs(
                meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                           'scale_factor'))
        ])
        self._image = None  # set_image's cache

    def read_image(self, img) -> np.ndarray:
        """:func:`rap_sam.apis.inputs.read_image` with this predictor's
        pixel limit, and refusing an image too thin to resize to
        :attr:`scale`."""
        img = read_image(img, self.max_pixels)
        self.check_resizable(img.shape[0], img.shape[1])
        return img

    def check_resizable(self, height: int, width: int) -> None:
        """Refuse an image whose short side would vanish (0 pixels) when
        resized to fit :attr:`scale` keeping its aspect ratio."""
        new_w, new_h = mmcv.rescale_size((width, height), self.scale)
        if new_w < 1 or new_h < 1:
            raise InputError(
                f'The image is {width} x {height} pixels, too thin to '
                f'resize to fit {self.scale[0]} x {self.scale[1]} (it would '
                f'be {new_w} x {new_h}): crop or pad it to a less extreme '
                'aspect ratio.')

    def _use_vocabulary(self, classes, num_things, clip_checkpoint) -> dict:
        """Swap the model's classifier for the user's classes."""
        from rap_sam.models.utils import VocabularyError, use_vocabulary
        from rap_sam.utils.text_classifier import read_class_file
        if isinstance(classes, str):
            if not osp.isfile(classes):
                raise InputError(f'Class file not found: {classes}')
            classes = read_class_file(classes)
        if not isinstance(classes, (list, tuple)) or not all(
                isinstance(c, str) for c in classes):
            raise InputError('classes must be a list of class names '
                             '(strings) or a class file path, got '
                             f'{classes!r}.')
        if not any(c.strip() for c in classes):
            raise InputError('The vocabulary is empty: give at least one '
                             'class name.')
        if num_things is not None:
            check_int(num_things, 'num_things', 0)
        try:
            names, num_things = use_vocabulary(self.model, classes, num_things,
                                               clip_checkpoint)
        except VocabularyError as err:
            raise InputError(str(err)) from err
        return dict(
            classes=names,
            thing_classes=names[:num_things],
            stuff_classes=names[num_things:],
            palette=_palette(len(names)))

    @property
    def class_names(self) -> List[str]:
        return self.dataset_meta['classes']

    def _batch(self, img: np.ndarray) -> dict:
        data = self.pipeline(dict(img=img, img_id=0))
        return dict(
            inputs=[data['inputs']], data_samples=[data['data_samples']])

    def _runtime_sample(self, meta: dict) -> DetDataSample:
        return DetDataSample(metainfo=dict(meta, img_id=0))

    @torch.no_grad()
    def segment_image(self, img: Union[str, np.ndarray]) -> DetDataSample:
        """Panoptic segments (``pred_panoptic_seg``, with ``segments``) and
        thing instances (``pred_instances``) at the image's own size.

        Raises:
            InputError: the model makes no panoptic segments (a video
                config's: instances only, for its clip linker).
        """
        if not self.model.panoptic_fusion_head.test_cfg.get(
                'panoptic_on', True):
            raise InputError(
                'This model makes no panoptic segments (its test_cfg has '
                'panoptic_on=False, as a video config has): segment images '
                'with an image config such as '
                'configs/rap_sam/eval_rap_sam_coco.py, or track videos '
                '(iter_video, demo/video_demo.py).')
        img = self.read_image(img)
        if self.runtime is None:
            return self.model.test_step(self._batch(img))[0]
        image, meta = self.runtime.preprocess(img)
        cls_logits, mask_logits = self.runtime.decode_panoptic(
            self.runtime.encode(image))
        return self.model.panoptic(
            torch.from_numpy(cls_logits), torch.from_numpy(mask_logits),
            [self._runtime_sample(meta)])[0]

    # ------------------------------------------------------------------
    # prompts
    # ------------------------------------------------------------------
    @torch.no_grad()
    def set_image(self, img: Union[str, np.ndarray]) -> None:
        """Run the backbone and neck once on ``img``; every following
        :meth:`predict_prompts` reuses these features."""
        img = self.read_image(img)
        if self.runtime is None:
            data = self.model.data_preprocessor(self._batch(img), False)
            feats = self.model.extract_feat(data['inputs'])
            metainfo = data['data_samples'][0].metainfo
            if isinstance(feats, LowRankFeatureMap):
                # Made here, once, rather than by the first click: every
                # click's gathers and products with the map read them (the
                # columns are made from the pixel rows, which are kept).
                feats.pixel_columns()
        else:
            image, metainfo = self.runtime.preprocess(img)
            feats = self.runtime.encode(image)
            metainfo = dict(metainfo, img_id=0)
        self._image = dict(
            feats=feats,
            metainfo=metainfo,
            height=img.shape[0],
            width=img.shape[1])

    @property
    def image_size(self) -> Optional[Tuple[int, int]]:
        """``(width, height)`` of the image given to :meth:`set_image`."""
        return (self._image['width'],
                self._image['height']) if self._image else None

    def prompt_boxes(self, points=None, boxes=None) -> torch.Tensor:
        """The checked prompts as the model's ``[N, 4]`` boxes at the
        resized scale: the points first (each as the 6-pixel box around it,
        the form the released model was trained with), then the boxes."""
        if self._image is None:
            raise InputError('No image yet: call set_image(img) first.')
        points, boxes = check_prompts(points, boxes, self._image['width'],
                                      self._image['height'])
        if self.runtime is not None:
            return torch.from_numpy(
                self.runtime.prompt_boxes(points, boxes,
                                          self._image['metainfo']))
        # Users give original-image pixels; the model's are the resized
        # image's, whose factors Resize recorded as (w_scale, h_scale).
        return scale_prompts(points, boxes,
                             self._image['metainfo']['scale_factor'],
                             self.device)

    @torch.no_grad()
    def predict_prompts(self,
                        points: Optional[Sequence] = None,
                        boxes: Optional[Sequence] = None,
                        batch_size: Optional[int] = None) -> DetDataSample:
        """One mask per prompt on the image of :meth:`set_image`; only the
        decoder runs.

        Prompts never see each other in the decoder, so they are decoded
        in batches with the results of decoding all at once (the same
        masks; scores equal to float rounding, about 1e-5): memory is that
        of one batch (its float masks at the original size, at most
        :data:`PROMPT_BATCH_PIXELS` values, 256 MB) plus the returned bool
        masks, one byte per pixel per prompt.

        Args:
            points: ``[N, 2]`` clicks (x, y) in original-image pixels, inside
                the image; one click may be given flat as ``[x, y]``.
            boxes: ``[M, 4]`` boxes (x1, y1, x2, y2) in original-image
                pixels, clipped to the image; one box may be given flat.
            batch_size (int, optional): Prompts decoded together at most;
                default the predictor's ``prompt_batch_size`` (64). Fewer on
                images above 1 megapixel (``PROMPT_BATCH_PIXELS // (H *
                W)``, at least one).

        Returns:
            DetDataSample: ``pred_instances`` with, per prompt (points
            first, then boxes, in the order given), ``masks`` (bool
            ``[N + M, H, W]`` at the original size), ``iou_scores`` (the
            model's estimate of the mask's IoU), ``labels`` and ``scores``
            (its class; names in :attr:`class_names`).

        Raises:
            InputError: no image set, no prompt, a point outside the image,
                a box that is empty or outside it, a flat list of several
                prompts, booleans or strings.
        """
        size = self.prompt_batch_size if batch_size is None else check_int(
            batch_size, 'batch_size')
        prompt_boxes = self.prompt_boxes(points, boxes)
        pixels = self._image['height'] * self._image['width']
        size = min(size, max(1, PROMPT_BATCH_PIXELS // pixels))
        prompts = InstanceData(
            point_coords=prompt_boxes,
            pb_labels=torch.ones(
                len(prompt_boxes), dtype=torch.long, device=self.device))
        if len(prompts) <= size:
            # One batch (a click): its result as it is, without copying
            # the masks into a joint tensor.
            sample = DetDataSample(metainfo=self._image['metainfo'])
            sample.gt_instances_collected = prompts
            return self._decode_prompts(sample)
        masks, parts, result = None, [], None
        for start in range(0, len(prompts), size):
            sample = DetDataSample(metainfo=self._image['metainfo'])
            sample.gt_instances_collected = prompts[start:start + size]
            result = self._decode_prompts(sample)
            pred = result.pred_instances
            if masks is None:  # filled in place: no second copy to concat
                masks = pred.masks.new_empty((len(prompts), ) +
                                             pred.masks.shape[1:])
            masks[start:start + len(pred)] = pred.masks
            del pred.masks
            parts.append(pred)
        result.gt_instances_collected = prompts
        result.pred_instances = InstanceData.cat(parts)
        result.pred_instances.masks = masks
        return result

    def _decode_prompts(self, sample: DetDataSample) -> DetDataSample:
        if self.runtime is None:
            return self.model.predict_from_feats(self._image['feats'],
                                                 [sample])[0]
        boxes = sample.gt_instances_collected.point_coords
        cls_logits, mask_logits, iou = self.runtime.decode_prompts(
            self._image['feats'], boxes.numpy(), sample.metainfo)
        return self.model.prompts(
            torch.from_numpy(cls_logits), torch.from_numpy(mask_logits),
            torch.from_numpy(iou), [sample])[0]

    # ------------------------------------------------------------------
    # videos
    # ------------------------------------------------------------------
    def iter_video(
        self,
        video,
        chunk_frames: int = 30,
        score_thr: Optional[float] = None
    ) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
        """Track instances through a video, yielding ``(frame, result)``
        per frame as each chunk of frames is done, so that a video of any
        length runs in bounded memory.

        Args:
            video: A video file (mp4 ... as OpenCV reads it), a folder of
                frames, a ``[T, H, W, 3]`` array or a list of frames (BGR),
                as :func:`rap_sam.apis.inputs.iter_frames` reads them; a
                single ``[H, W, 3]`` image is refused.
            chunk_frames (int): Frames read and decoded together. A video no
                longer than this gives exactly the model's ``test_step``
                result; longer ones are cut into chunks whose queries stay
                linked (the model's clip-to-clip matching), while each
                chunk's classes are averaged over that chunk only.
            score_thr (float, optional): Drop instances scoring lower; in
                [0, 1].

        Yields:
            The BGR frame and a ``DetDataSample`` whose
            ``pred_track_instances`` (masks at the frame's size, ``labels``,
            ``scores``, ``bboxes``) carry ``instances_id``: one id per track
            through the whole video.
        """
        self._check_video_backend()
        # Checked now, not when the first frame is asked for.
        chunk_frames = check_chunk_frames(chunk_frames, self.scale)
        if score_thr is not None:
            score_thr = check_number(score_thr, 'score_thr')
        return track_video(self, video, chunk_frames, score_thr)

    def _check_video_backend(self) -> None:
        if self.runtime is not None:
            raise InputError(
                f'Videos run on the torch backend only (the export has no '
                f'clip graph); this predictor runs {self.backend}: use '
                "RapSAMPredictor(config, weights, backend='torch').")

    def iter_track_prompt(
            self,
            video,
            frame_index: int,
            points: Optional[Sequence] = None,
            boxes: Optional[Sequence] = None,
            chunk_frames: int = 30
    ) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
        """Click-to-track: the objects prompted on one frame, followed
        through the whole video (before that frame and after it), yielding
        ``(frame, result)`` per frame in frame order.

        Each prompt (a click or a box, as for :meth:`predict_prompts`) is
        one object. On the prompted frame its mask is the prompt decoder's
        (:meth:`predict_prompts` on that frame); the object query whose mask
        there overlaps it most (IoU times the query's class score) is the
        object's track, whose mask is given in every other frame (RAP-SAM's
        clip linking, as :meth:`iter_video` links; see
        :mod:`rap_sam.apis.prompt_tracking`). Frames are read a chunk at a
        time; a prompt after the first clip (5 frames; 3 for a
        video of at most 15 frames) makes the video be read twice, and an
        iterator of frames is read into a list first.

        Args:
            video: A video file, a folder of frames, a ``[T, H, W, 3]``
                array, a list or an iterator of frames (BGR), as
                :func:`rap_sam.apis.inputs.iter_frames` reads them; not a
                camera or a stream.
            frame_index (int): The prompted frame (0 is the first).
            points: ``[N, 2]`` clicks (x, y) in the frame's pixels.
            boxes: ``[M, 4]`` boxes (x1, y1, x2, y2) in the frame's pixels.
            chunk_frames (int): Frames read and decoded together.

        Yields:
            The BGR frame and a ``DetDataSample`` whose
            ``pred_track_instances`` hold one object per prompt (points
            first, then boxes, in the order given): ``masks`` (bool, at the
            frame's size), ``bboxes``, ``labels`` and ``scores`` (the
            prompt's class on the prompted frame), ``instances_id`` (1, 2,
            ... in prompt order), ``query_indices`` (its track) and
            ``match_ious`` (the IoU of the prompt's mask with the track's
            on the prompted frame, at feature resolution: low when no
            track follows the prompted object).

        Raises:
            InputError: a bad ``frame_index`` (negative, past the last
                frame), no prompt, a click outside the frame or an empty
                box, a camera or stream, and what :meth:`iter_video`
                refuses.
        """
        self._check_video_backend()
        return track_prompt(self, video, frame_index, points, boxes,
                            chunk_frames)

    def track_prompt(self,
                     video,
                     frame_index: int,
                     points: Optional[Sequence] = None,
                     boxes: Optional[Sequence] = None,
                     chunk_frames: int = 30) -> List[DetDataSample]:
        """:meth:`iter_track_prompt`'s results as a list, one per frame:
        ``result.pred_track_instances.masks[i]`` is prompt ``i``'s object
        in that frame."""
        return [
            result for _, result in self.iter_track_prompt(
                video, frame_index, points, boxes, chunk_frames)
        ]

    def stream(
        self,
        source,
        score_thr: Optional[float] = None,
        chunk_frames: Optional[int] = None
    ) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
        """:meth:`iter_video` for live sources: a camera index, a stream URL
        (anything OpenCV's FFmpeg reads), or any source :meth:`iter_video`
        takes, segmented one clip of the model's linker at a time (5 frames
        for the released video model), so each frame's result comes at most
        one clip after the frame, memory does not grow with the stream's
        length and track ids stay the same through the whole stream.

        Args:
            source: A camera index (``0``), a stream URL
                (``rtsp://...``, ``http://...``), a video file, a frame
                folder, an array, a list or an iterator of frames.
            score_thr (float, optional): As for :meth:`iter_video`.
            chunk_frames (int, optional): Frames segmented together, the
                latency; default the linker's clip size.

        Yields:
            ``(frame, result)`` as :meth:`iter_video`.
        """
        self._check_video_backend()
        if chunk_frames is None:
            chunk_frames = clip_linker(self.model).clip_size
        return self.iter_video(source, chunk_frames, score_thr)

    def segment_video(self,
                      video,
                      chunk_frames: int = 30,
                      score_thr: Optional[float] = None,
                      rle_masks: bool = True) -> List[DetDataSample]:
        """:meth:`iter_video`'s results as a list, one per frame.

        Args:
            video, chunk_frames, score_thr: As for :meth:`iter_video`.
            rle_masks (bool): Each frame's ``masks`` as a list of COCO RLEs
                (dicts with ``size`` and ``counts``, as
                ``pycocotools.mask.encode`` writes them; ``decode`` gives
                the bool masks back, lossless), encoded as soon as the frame
                is done (the default): RLEs take a few kB per instance, so
                a long video's results fit in memory. ``False`` keeps dense
                bool masks, which all stay in memory (100 instances of a
                640 x 360 frame are 22 MB); :meth:`iter_video` hands them
                out a chunk at a time instead.
        """
        if not isinstance(rle_masks, bool):
            raise InputError('rle_masks must be True or False, got '
                             f'{rle_masks!r}.')
        results = []
        for _, result in self.iter_video(video, chunk_frames, score_thr):
            if rle_masks:
                instances = result.pred_track_instances
                instances.masks = encode_mask_results(
                    instances.masks.cpu().numpy())
            results.append(result)
        return results
