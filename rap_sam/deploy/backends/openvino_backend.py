"""OpenVINO (CPU) backend."""
from typing import Dict

import numpy as np

from .base_backend import BaseBackend, import_runtime


class OpenVINOBackend(BaseBackend):
    """Compiles the export folder's ONNX graphs with OpenVINO for the CPU.

    The inference precision is set explicitly: OpenVINO computes in
    bfloat16 by default on CPUs that have it (AVX-512 BF16, AMX), which
    would make fp32 approximate there. bf16 asks for bfloat16 (on a CPU
    without it OpenVINO falls back to fp32); int8 runs quantized graphs
    (QDQ) with OpenVINO's int8 kernels.
    """

    name = 'openvino'
    precisions = ('fp32', 'bf16', 'int8')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ov = import_runtime('openvino', 'openvino', self.name)
        self._core = self._ov.Core()

    def _open(self, path: str):
        config = {
            'INFERENCE_PRECISION_HINT':
            'bf16' if self.precision == 'bf16' else 'f32',
            'PERFORMANCE_HINT': 'LATENCY',
        }
        if self.num_threads is not None:
            config['INFERENCE_NUM_THREADS'] = self.num_threads
        compiled = self._core.compile_model(
            self._core.read_model(path), 'CPU', config)
        return compiled, compiled.create_infer_request()

    def _input_names(self, session) -> list:
        return [port.get_any_name() for port in session[0].inputs]

    def _run(self, session, feeds: Dict[str,
                                        np.ndarray]) -> Dict[str, np.ndarray]:
        compiled, request = session
        request.infer(feeds)
        # The request's output buffers are reused by its next inference:
        # hand out copies.
        return {
            port.get_any_name():
            np.array(request.get_tensor(port).data, copy=True)
            for port in compiled.outputs
        }
