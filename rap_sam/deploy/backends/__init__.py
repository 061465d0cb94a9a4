"""Runtime backends for exported RAP-SAM graphs (ONNX Runtime, OpenVINO)
and the numpy / OpenCV preprocessing they are fed with.

Nothing in this package imports torch: a deployment needs only the
runtime, numpy and OpenCV to encode images and decode prompts. The
post-processing of the decoders' outputs (mask upsampling, panoptic
fusion) is torch code shared with the torch model (see
:class:`rap_sam.apis.RapSAMPredictor`).
"""
from .base_backend import (FOLDER_PRECISIONS, GRAPH_NAMES, PRECISIONS,
                           BackendError, BaseBackend, import_runtime,
                           reads_int8_folder, runs_bf16)
from .builder import BACKENDS, build_backend
from .deployed_model import DeployedModel
from .image_preprocessor import ImagePreprocessor
from .onnxruntime_backend import OnnxRuntimeBackend
from .openvino_backend import OpenVINOBackend

__all__ = [
    'BACKENDS', 'BackendError', 'BaseBackend', 'DeployedModel',
    'FOLDER_PRECISIONS', 'GRAPH_NAMES', 'ImagePreprocessor',
    'OnnxRuntimeBackend', 'OpenVINOBackend', 'PRECISIONS', 'build_backend',
    'import_runtime', 'reads_int8_folder', 'runs_bf16'
]
