"""ONNX Runtime (CPU) backend."""
from typing import Dict

import numpy as np

from .base_backend import BaseBackend, import_runtime


class OnnxRuntimeBackend(BaseBackend):
    """Runs the export folder's graphs with ONNX Runtime's CPU execution
    provider, all graph optimisations on.

    fp32 runs the graphs as exported; int8 runs quantized graphs (QDQ, as
    ``rap_sam.deploy.quantize`` writes them). ONNX Runtime has no bfloat16
    CPU kernels for most operators, so bf16 is OpenVINO's (or torch's).
    """

    name = 'onnxruntime'
    precisions = ('fp32', 'int8')

    #: Session config entries. The pool's threads spin while a run waits
    #: for work (what makes 2 threads faster than one on a click), but by
    #: default they go on spinning after the run returns, for several
    #: milliseconds, on the cores the caller's next work needs: the torch
    #: post-processing of a click took 2.6-10 ms after a run instead of
    #: 1.5, and a decoder run next (another session, OpenVINO) up to 2x
    #: its time (docs/deploy.md, Speed).
    session_config = {'session.force_spinning_stop': '1'}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ort = import_runtime('onnxruntime', 'onnxruntime', self.name)

    def _open(self, path: str):
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.num_threads is not None:
            options.intra_op_num_threads = self.num_threads
        # The graphs are chains: a second pool of threads would only
        # compete with the first for the same cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        return ort.InferenceSession(
            path, sess_options=options, providers=['CPUExecutionProvider'])

    def _input_names(self, session) -> list:
        return [node.name for node in session.get_inputs()]

    def _run(self, session, feeds: Dict[str,
                                        np.ndarray]) -> Dict[str, np.ndarray]:
        names = [node.name for node in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))
