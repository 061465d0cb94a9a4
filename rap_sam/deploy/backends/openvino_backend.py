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
        model = self._core.read_model(path)
        # The graph's own names, taken before compiling: the compiled
        # model merges a graph output with the tensor it copies
        # (cls_logits with '/head/classifier_1/Mul_output_0'), and
        # get_any_name() may then answer with the inner one.
        inputs = [port.get_any_name() for port in model.inputs]
        outputs = [port.get_any_name() for port in model.outputs]
        compiled = self._core.compile_model(model, 'CPU', config)
        return compiled, compiled.create_infer_request(), inputs, outputs

    def _input_names(self, session) -> list:
        return session[2]

    def _run(self, session, feeds: Dict[str,
                                        np.ndarray]) -> Dict[str, np.ndarray]:
        compiled, request, _, names = session
        request.infer(feeds)
        # The request's output buffers are reused by its next inference:
        # hand out copies.
        return {
            name: np.array(request.get_tensor(port).data, copy=True)
            for name, port in zip(names, compiled.outputs)
        }
