"""Load RAP-SAM once and segment images with it."""
import os.path as osp
import warnings
from typing import Optional, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.datasets.transforms import PackDetInputs, Resize
from mmdet.registry import DATASETS, MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config

from rap_sam.datasets import display_names
from rap_sam.utils.checkpoint import load_model_weights
from rap_sam.utils.class_embeddings import class_embedding_path

RANDOM_WEIGHTS_WARNING = (
    '\n' + '!' * 72 + '\n'
    '!!  No --weights given: RAP-SAM runs with RANDOM weights. The output\n'
    '!!  shows that the pipeline works, not what the model can do. Pass the\n'
    '!!  released rapsam_r50_12e.pth (or your own checkpoint) for real masks.\n'
    + '!' * 72)


def _test_scale(cfg: Config, default=(1333, 800)):
    """The ``Resize`` scale of the config's test pipeline."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline', [])
    for step in pipeline:
        kind = step.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name == 'Resize':
            return tuple(step['scale'])
    return default


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
        palette = [tuple(int(c) for c in rng.integers(0, 256, 3))
                   for _ in range(num_classes)]
    return dict(classes=names, thing_classes=names[:num_things],
                stuff_classes=names[num_things:],
                palette=list(palette[:num_classes]))


class RapSAMPredictor:
    """RAP-SAM loaded once, for images.

    Args:
        config (str | Config): An eval config, e.g.
            ``configs/rap_sam/eval_rap_sam_coco.py``.
        weights (str, optional): A checkpoint. Without one the model has
            random weights and a loud warning says so.
        device (str, optional): ``cpu``, ``cuda``, ``cuda:1`` ...; the GPU
            when there is one, else the CPU.
    """

    def __init__(self,
                 config: Union[str, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None):
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
        self.cfg = cfg
        self.device = torch.device(device or (
            'cuda' if torch.cuda.is_available() else 'cpu'))
        self.model = MODELS.build(cfg.model)
        if weights is None:
            self.model.init_weights()
        else:
            load_model_weights(self.model, weights)
        self.model.to(self.device).eval()

        self.dataset_meta = _dataset_meta(cfg, self.model.num_classes,
                                          self.model.num_things_classes)
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'),
            Resize(scale=_test_scale(cfg), keep_ratio=True),
            PackDetInputs(meta_keys=('img_id', 'img_path', 'ori_shape',
                                     'img_shape', 'scale_factor'))
        ])

    @staticmethod
    def read_image(img: Union[str, np.ndarray]) -> np.ndarray:
        """A BGR uint8 image ``[H, W, 3]`` from a path or an array."""
        if isinstance(img, str):
            if not osp.isfile(img):
                raise FileNotFoundError(f'Image not found: {img}')
            array = mmcv.imread(img, flag='color')
            if array is None:
                raise ValueError(f'Cannot read {img} as an image')
            return array
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f'Expected a colour image [H, W, 3], got shape {img.shape}; '
                'convert grayscale / RGBA images to 3 channels first.')
        return img.astype(np.uint8, copy=False)

    def _batch(self, img: np.ndarray) -> dict:
        data = self.pipeline(dict(img=img, img_id=0))
        return dict(inputs=[data['inputs']],
                    data_samples=[data['data_samples']])

    @torch.no_grad()
    def segment_image(self, img: Union[str, np.ndarray]) -> DetDataSample:
        """Panoptic segments (``pred_panoptic_seg``, with ``segments``) and
        thing instances (``pred_instances``) at the image's own size."""
        return self.model.test_step(self._batch(self.read_image(img)))[0]
