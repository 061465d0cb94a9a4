"""The export folders a benchmark's ONNX Runtime and OpenVINO variants read,
made once per run, and the photos int8 is calibrated on."""
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch.nn as nn

from rap_sam.utils.user_errors import UserError
from ..backends import reads_int8_folder
from .inputs import DEMO_IMAGE

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
        from ..quantize import (CALIBRATIONS, DEFAULT_CALIBRATION,
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
            from ..export import export_model
            path = osp.join(self.work_dir, 'export_fp32')
            export_model(self.model, path, shape=self.shape)
            self.notes.append(
                f'runtime variants run an fp32 ONNX export made now at '
                f'{self.shape[0]}x{self.shape[1]} (per shape; bf16 is '
                "OpenVINO's inference precision on it)")
        else:
            from ..quantize import quantize_export
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
