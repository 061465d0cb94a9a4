"""An export folder run by a runtime: image in, decoder logits out, in
numpy (no torch)."""
import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from rap_sam.utils.cpu_features import cpu_has_vnni
from rap_sam.utils.user_errors import UserNotice
from .base_backend import FOLDER_PRECISIONS, BackendError, reads_int8_folder
from .builder import build_backend

#: The released model saw every click as a box of +-3 pixels around it
#: (``rap_sam.models.utils.prompts.CLICK_RADIUS``, which imports torch).
CLICK_RADIUS = 3

Features = Dict[str, np.ndarray]


class DeployedModel:
    """The three graphs of an export folder on one runtime, with the
    preprocessing its deploy.json describes.

    Everything here is numpy, OpenCV and the runtime: :meth:`encode` and
    :meth:`decode_prompts` (SAM-style interactive use) and
    :meth:`decode_panoptic` need no torch. Their outputs are the torch
    head's (``cls_logits``, ``mask_logits`` at feature resolution,
    ``iou``); turning those into masks at the image's size is the model's
    post-processing (:class:`RapSAMPostProcessor`, torch).

    Args:
        export_dir (str): A folder written by ``tools/deploy/export.py``
            (or ``rap_sam.deploy.quantize``).
        backend (str): ``onnxruntime`` or ``openvino``.
        precision (str, optional): The folder's precision by default;
            ``bf16`` may also be asked of an fp32 folder and ``int8-bf16``
            of an int8 one (runtime choices, OpenVINO only; see
            :data:`~.base_backend.FOLDER_PRECISIONS`).
        num_threads (int, optional): Threads per graph.

    Raises:
        UserError: a missing or invalid export folder (naming the file), a
            precision the folder or the runtime does not have.
    """

    def __init__(self,
                 export_dir: str,
                 backend: str = 'onnxruntime',
                 precision: Optional[str] = None,
                 num_threads: Optional[int] = None):
        from ..deploy_spec import read_deploy_spec
        export_dir = os.fspath(export_dir)
        # Checked whole (files there, inputs and outputs as listed) before
        # any graph is loaded: a wrong file is named, not a runtime's
        # shape error at the first image.
        self.spec = spec = read_deploy_spec(export_dir)
        if precision is None:
            precision = spec.precision
        elif spec.precision not in FOLDER_PRECISIONS.get(precision, ()):
            if precision not in FOLDER_PRECISIONS:
                raise BackendError(f'precision must be one of '
                                   f'{", ".join(FOLDER_PRECISIONS)}, got '
                                   f'{precision!r}.')
            needed = FOLDER_PRECISIONS[precision]
            hint = (' (make one with tools/deploy/export.py --precision int8 '
                    '--calib DIR_OF_IMAGES)' if 'int8' in needed else '')
            raise BackendError(
                f'{export_dir} is exported in {spec.precision} (its '
                f'deploy.json); {precision} needs a folder exported in '
                f'{" or ".join(needed)}{hint}.')
        self.export_dir = export_dir
        self.precision = precision
        if (reads_int8_folder(precision)
                and spec.get('int8_weight_bits') in (None, 8)
                and cpu_has_vnni() is False):
            warnings.warn(
                f'{export_dir} holds int8 weights of 8 bits, which saturate '
                'on this CPU (no VNNI: AVX2 only), so its results drift '
                '(PQ -1.7 to -7 on a toy model); for this CPU export with '
                '--int8-weight-bits 7 (tools/deploy/export.py; weight_bits=7 '
                'in quantize_export).',
                UserNotice,
                stacklevel=2)
        self.backend = build_backend(
            backend,
            export_dir,
            precision=precision,
            num_threads=num_threads,
            graph_files=spec.graph_files)
        self.preprocessor = spec.image_preprocessor()

    @property
    def class_names(self) -> List[str]:
        return list(self.spec['classes'])

    @property
    def num_things(self) -> int:
        """The first ``num_things`` classes are things."""
        return self.spec['num_things']

    @property
    def test_cfg(self) -> dict:
        """The fusion head's thresholds (the model's ``test_cfg``)."""
        return dict(self.spec['test_cfg'])

    @property
    def scale(self) -> Tuple[int, int]:
        """``(w, h)`` images are resized to fit."""
        return self.preprocessor.scale

    def preprocess(self, img: np.ndarray) -> Tuple[np.ndarray, dict]:
        """BGR uint8 ``[H, W, 3]`` -> the encoder's input and the sample's
        metainfo (:class:`ImagePreprocessor`)."""
        return self.preprocessor(img)

    def encode(self, image: np.ndarray) -> Features:
        """The preprocessed image -> the encoder's outputs by name
        (read-only where the backend keeps a converted copy of them:
        OpenVINO computing in bf16)."""
        return self.backend.run('image_encoder',
                                {self.spec.image_input: image})

    def decode_panoptic(self,
                        features: Features) -> Tuple[np.ndarray, np.ndarray]:
        """-> ``cls_logits`` ``[1, Q, K + 1]``, ``mask_logits``
        ``[1, Q, h, w]``."""
        out = self.backend.run('panoptic_decoder', features)
        return out['cls_logits'], out['mask_logits']

    def decode_prompts(
            self, features: Features, boxes: np.ndarray,
            meta: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``boxes`` ``[N, 4]`` in the resized image's pixels (clicks as
        :meth:`prompt_boxes` makes them) -> ``cls_logits`` ``[1, N, K + 1]``,
        ``mask_logits`` ``[1, N, h, w]``, ``iou`` ``[1, N, 1]``."""
        spec = self.spec
        feeds = dict(features)
        feeds[spec.boxes_input] = np.asarray(boxes, np.float32)
        if spec.img_shape_input in spec.input_names('prompt_decoder'):
            # The resized image's (h, w), which boxes are normalised by.
            feeds[spec.img_shape_input] = np.asarray(meta['img_shape'][:2],
                                                     spec.img_shape_dtype)
        out = self.backend.run('prompt_decoder', feeds)
        return out['cls_logits'], out['mask_logits'], out['iou']

    @staticmethod
    def prompt_boxes(points: np.ndarray, boxes: np.ndarray,
                     meta: dict) -> np.ndarray:
        """Clicks ``[N, 2]`` and boxes ``[M, 4]`` in original-image pixels
        -> ``[N + M, 4]`` float32 boxes at the resized scale, each click as
        its 6-pixel box: the same numbers as the torch predictor's
        (factors rounded to float32, products in float64, as torch's
        type promotion does there)."""
        sx, sy = np.asarray(meta['scale_factor'][:2],
                            np.float32).astype(np.float64)
        clicks = (np.asarray(points, np.float64).reshape(-1, 2) *
                  np.array([sx, sy])).astype(np.float32)
        clicks = np.concatenate(
            [clicks - np.float32(CLICK_RADIUS), clicks + CLICK_RADIUS], axis=1)
        boxes = (np.asarray(boxes, np.float64).reshape(-1, 4) *
                 np.array([sx, sy, sx, sy])).astype(np.float32)
        return np.concatenate([clicks, boxes]).astype(np.float32)
