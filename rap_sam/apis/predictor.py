"""Load RAP-SAM once; segment images, videos and click / box prompts."""
import logging
import os.path as osp
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.datasets.transforms import PackDetInputs, Resize
from mmdet.registry import DATASETS, MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from rap_sam.datasets import display_names
from rap_sam.models.utils import clicks_to_boxes
from rap_sam.utils.checkpoint import load_model_weights
from rap_sam.utils.class_embeddings import class_embedding_path
from .inputs import InputError, check_prompts, read_image
from .video import track_video

RANDOM_WEIGHTS_WARNING = (
    '\n' + '!' * 72 + '\n'
    '!!  No --weights given: RAP-SAM runs with RANDOM weights. The output\n'
    '!!  shows that the pipeline works, not what the model can do. Pass the\n'
    '!!  released rapsam_r50_12e.pth (or your own checkpoint) for real '
    'masks.\n' + '!' * 72)


def _find_scale(steps) -> Optional[tuple]:
    for step in steps or []:
        kind = step.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name.split('.')[-1] == 'Resize':
            return tuple(step['scale'])
        # Video pipelines nest the per-frame steps (TransformBroadcaster).
        found = _find_scale(step.get('transforms'))
        if found:
            return found
    return None


def _test_scale(cfg: Config, default=(1333, 800)) -> tuple:
    """The ``Resize`` scale (w, h) of the config's test pipeline."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset',
                                                  {}).get('pipeline', [])
    return _find_scale(pipeline) or default


def _dataset_meta(cfg: Config, num_classes: int, num_things: int) -> dict:
    """Display names and colours of the config's test dataset, or generic
    ones when it has none that fit the model."""
    kind = cfg.get('test_dataloader', {}).get('dataset', {}).get('type')
    if isinstance(kind, str):
        kind = DATASETS.get(kind)
    meta = getattr(kind, 'METAINFO', {})
    classes = meta.get('classes')
    if classes is not None and len(classes) == num_classes:
        names = display_names(classes)
    else:
        names = [f'class_{i}' for i in range(num_classes)]
    palette = meta.get('palette')
    if palette is None or len(palette) < num_classes:
        rng = np.random.default_rng(0)
        palette = [
            tuple(int(c) for c in rng.integers(0, 256, 3))
            for _ in range(num_classes)
        ]
    return dict(
        classes=names,
        thing_classes=names[:num_things],
        stuff_classes=names[num_things:],
        palette=list(palette[:num_classes]))


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
            YouTube-VIS classes and clip linking).
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
            (:func:`rap_sam.models.utils.optimize_for_inference`: BatchNorms
            folded, channels-last, low-rank neck output), which give the
            same outputs to float rounding, faster; False runs the model
            as built (the reference's computation).
    """

    def __init__(self,
                 config: Union[str, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 scale: Optional[Tuple[int, int]] = None,
                 classes: Optional[Union[str, Sequence[str]]] = None,
                 num_things: Optional[int] = None,
                 clip_checkpoint: Optional[str] = None,
                 optimize: bool = True):
        cfg = Config.fromfile(config) if isinstance(config, str) else config
        cfg = cfg.copy()
        cfg.model.backbone.init_cfg = None
        head = cfg.model.panoptic_head
        if weights is None:
            warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
            name = head.get('ov_classifier_name')
            if name and not osp.isfile(
                    class_embedding_path(name, head.get('ov_classifier_dir'))):
                warnings.warn(
                    f'Class-embedding file {name}.pth not found: using random '
                    'class embeddings as well (see tools/gen_cls.py).',
                    stacklevel=2)
                head.ov_classifier_name = None
        if cfg.model.get('test_cfg', {}).get('rle_masks'):
            # iter_video hands out a chunk of frames at a time, so dense
            # masks fit in memory and are what callers draw with.
            cfg.model.test_cfg.rle_masks = False
        self.cfg = cfg
        self.device = torch.device(
            device or ('cuda' if torch.cuda.is_available() else 'cpu'))
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
            self.dataset_meta = _dataset_meta(cfg, self.model.num_classes,
                                              self.model.num_things_classes)
        self.model.to(self.device).eval()
        if optimize:
            from rap_sam.models.utils.inference_mode import \
                optimize_for_inference
            optimize_for_inference(self.model)
        self.scale = tuple(scale) if scale else _test_scale(cfg)
        self.resize = Resize(scale=self.scale, keep_ratio=True)
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'), self.resize,
            PackDetInputs(
                meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                           'scale_factor'))
        ])
        self._image = None  # set_image's cache

    read_image = staticmethod(read_image)

    def _use_vocabulary(self, classes, num_things, clip_checkpoint) -> dict:
        """Swap the model's classifier for the user's classes."""
        from rap_sam.models.utils import set_vocabulary
        from rap_sam.utils.class_embeddings import load_class_embeddings
        from rap_sam.utils.openclip_loader import (DEFAULT_CLIP_MODEL,
                                                   DEFAULT_CLIP_PRETRAINED)
        from rap_sam.utils.text_classifier import (read_class_file,
                                                   vocabulary_embeddings)
        if isinstance(classes, str):
            if not osp.isfile(classes):
                raise InputError(f'Class file not found: {classes}')
            classes = read_class_file(classes)
        classes = [c.strip() for c in classes if c.strip()]
        if not classes:
            raise InputError('The vocabulary is empty: give at least one '
                             'class name.')
        num_things = len(classes) if num_things is None else num_things
        name, _ = vocabulary_embeddings(
            classes,
            DEFAULT_CLIP_MODEL,
            DEFAULT_CLIP_PRETRAINED,
            checkpoint=clip_checkpoint)
        head = self.model.panoptic_head
        embeddings = load_class_embeddings(
            name, embed_dims=head.classifier.embed_dims)
        set_vocabulary(self.model, embeddings, num_things)
        names = display_names(classes)
        rng = np.random.default_rng(0)
        return dict(
            classes=names,
            thing_classes=names[:num_things],
            stuff_classes=names[num_things:],
            palette=[
                tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in names
            ])

    @property
    def class_names(self) -> List[str]:
        return self.dataset_meta['classes']

    def _batch(self, img: np.ndarray) -> dict:
        data = self.pipeline(dict(img=img, img_id=0))
        return dict(
            inputs=[data['inputs']], data_samples=[data['data_samples']])

    @torch.no_grad()
    def segment_image(self, img: Union[str, np.ndarray]) -> DetDataSample:
        """Panoptic segments (``pred_panoptic_seg``, with ``segments``) and
        thing instances (``pred_instances``) at the image's own size."""
        return self.model.test_step(self._batch(read_image(img)))[0]

    # ------------------------------------------------------------------
    # prompts
    # ------------------------------------------------------------------
    @torch.no_grad()
    def set_image(self, img: Union[str, np.ndarray]) -> None:
        """Run the backbone and neck once on ``img``; every following
        :meth:`predict_prompts` reuses these features."""
        img = read_image(img)
        data = self.model.data_preprocessor(self._batch(img), False)
        feats = self.model.extract_feat(data['inputs'])
        self._image = dict(
            feats=feats,
            metainfo=data['data_samples'][0].metainfo,
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
        # Users give original-image pixels; the model's are the resized
        # image's, whose factors Resize recorded as (w_scale, h_scale).
        sx, sy = self._image['metainfo']['scale_factor'][:2]
        points = torch.from_numpy(points) * torch.tensor([sx, sy])
        boxes = torch.from_numpy(boxes) * torch.tensor([sx, sy, sx, sy])
        return torch.cat([clicks_to_boxes(points), boxes]).to(self.device)

    @torch.no_grad()
    def predict_prompts(self,
                        points: Optional[Sequence] = None,
                        boxes: Optional[Sequence] = None) -> DetDataSample:
        """One mask per prompt on the image of :meth:`set_image`; only the
        decoder runs.

        Args:
            points: ``[N, 2]`` clicks (x, y) in original-image pixels, inside
                the image.
            boxes: ``[M, 4]`` boxes (x1, y1, x2, y2) in original-image
                pixels; clipped to the image.

        Returns:
            DetDataSample: ``pred_instances`` with, per prompt (points
            first, then boxes, in the order given), ``masks`` (bool
            ``[N + M, H, W]`` at the original size), ``iou_scores`` (the
            model's estimate of the mask's IoU), ``labels`` and ``scores``
            (its class; names in :attr:`class_names`).

        Raises:
            InputError: no image set, no prompt, a point outside the image,
                a box that is empty or outside it.
        """
        prompt_boxes = self.prompt_boxes(points, boxes)
        sample = DetDataSample(metainfo=self._image['metainfo'])
        sample.gt_instances_collected = InstanceData(
            point_coords=prompt_boxes,
            pb_labels=torch.ones(
                len(prompt_boxes), dtype=torch.long, device=self.device))
        return self.model.predict_from_feats(self._image['feats'], [sample])[0]

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
                frames, a ``[T, H, W, 3]`` array or a list of frames (BGR).
            chunk_frames (int): Frames read and decoded together. A video no
                longer than this gives exactly the model's ``test_step``
                result; longer ones are cut into chunks whose queries stay
                linked (the model's clip-to-clip matching), while each
                chunk's classes are averaged over that chunk only.
            score_thr (float, optional): Drop instances scoring lower.

        Yields:
            The BGR frame and a ``DetDataSample`` whose
            ``pred_track_instances`` (masks at the frame's size, ``labels``,
            ``scores``, ``bboxes``) carry ``instances_id``: one id per track
            through the whole video.
        """
        return track_video(self, video, chunk_frames, score_thr)

    def segment_video(
            self,
            video,
            chunk_frames: int = 30,
            score_thr: Optional[float] = None) -> List[DetDataSample]:
        """:meth:`iter_video`'s results as a list, one per frame. All
        masks stay in memory: use :meth:`iter_video` for long videos."""
        return [
            result
            for _, result in self.iter_video(video, chunk_frames, score_thr)
        ]
