"""OpenVINO (CPU) backend."""
from typing import Dict, Optional

import numpy as np

from .base_backend import BackendError, BaseBackend, import_runtime, runs_bf16

#: The prompt decoder's input whose first axis is the number of prompts
#: (``rap_sam.deploy.graphs.BOXES``; that module imports torch).
PROMPT_INPUT = 'boxes'


class _CompiledGraph:
    """One graph compiled for the CPU, and, for a graph with a free number
    of prompts, compiled a second time with that number fixed to one.

    A click is one prompt. With the count free, OpenVINO plans shapes and
    kernels at each inference: the one-prompt copy decoded a click in 9.1
    ms against 11.3 (512x864, 2 threads, medians of 40) and a count
    changing between calls costs another 2 ms. The one-prompt copy is
    compiled first (what a click needs); the free one when a call first
    has another count (0.4 s, once).
    """

    def __init__(self, core, path: str, config: dict):
        self.core = core
        self.path = path
        self.config = config
        model = core.read_model(path)
        # The graph's own names, taken before compiling: the compiled
        # model merges a graph output with the tensor it copies
        # (cls_logits with '/head/classifier_1/Mul_output_0'), and
        # get_any_name() may then answer with the inner one.
        self.inputs = [port.get_any_name() for port in model.inputs]
        self.outputs = [port.get_any_name() for port in model.outputs]
        self.free = model
        self.one_prompt = None
        self._compiled = {}
        if PROMPT_INPUT in self.inputs:
            shape = model.input(PROMPT_INPUT).get_partial_shape()
            if shape.rank.is_static and shape[0].is_dynamic:
                self.free = model.clone()
                shape[0] = 1
                model.reshape({PROMPT_INPUT: shape})
                self.one_prompt = model
                self._compile('one')
                return
        self._compile('free')

    def _compile(self, key: str):
        model = self.one_prompt if key == 'one' else self.free
        compiled = self.core.compile_model(model, 'CPU', self.config)
        self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key]

    @property
    def compiled_keys(self) -> list:
        """Which models are compiled so far: ``'one'`` (one prompt) and
        ``'free'`` (any number)."""
        return sorted(self._compiled)

    def request(self, feeds: Dict[str, np.ndarray]):
        """The compiled model and infer request for ``feeds``."""
        key = 'free'
        if self.one_prompt is not None and len(feeds[PROMPT_INPUT]) == 1:
            key = 'one'
        if key in self._compiled:
            return self._compiled[key]
        try:
            return self._compile(key)
        except Exception as err:  # OpenVINO's own types
            message = str(err).strip().splitlines() or [type(err)]
            raise BackendError(
                f'openvino cannot compile {self.path} for '
                f'{len(feeds[PROMPT_INPUT])} prompts: {message[-1]}') from err


class OpenVINOBackend(BaseBackend):
    """Compiles the export folder's ONNX graphs with OpenVINO for the CPU.

    The inference precision is set explicitly: OpenVINO computes in
    bfloat16 by default on CPUs that have it (AVX-512 BF16, AMX), which
    would make fp32 approximate there. bf16 asks for bfloat16 (on a CPU
    without it OpenVINO falls back to fp32); int8 runs quantized graphs
    (QDQ) with OpenVINO's int8 kernels and their float operations in fp32;
    int8-bf16 runs the same graphs with the float operations in bfloat16
    (on an AMD EPYC Zen 4 the panoptic decoder took 93 ms instead of 159,
    a click 13 ms instead of 21; on an Intel Xeon without AMX bfloat16 was
    slower than fp32).
    """

    name = 'openvino'
    precisions = ('fp32', 'bf16', 'int8', 'int8-bf16')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ov = import_runtime('openvino', 'openvino', self.name)
        self._core = self._ov.Core()

    def _config(self) -> dict:
        config = {
            'INFERENCE_PRECISION_HINT':
            'bf16' if runs_bf16(self.precision) else 'f32',
            'PERFORMANCE_HINT': 'LATENCY',
        }
        if self.num_threads is not None:
            config['INFERENCE_NUM_THREADS'] = self.num_threads
        return config

    def _open(self, path: str) -> _CompiledGraph:
        return _CompiledGraph(self._core, path, self._config())

    def _input_names(self, session: _CompiledGraph) -> list:
        return session.inputs

    def _run(self, session: _CompiledGraph,
             feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        compiled, request = session.request(feeds)
        # share_inputs: the runtime reads the caller's arrays in place
        # instead of copying each into its own tensor first, a copy of the
        # whole feature map per click (14 MB at 512x864: 2-3 ms of a
        # click, 11.2 ms against 14.0 with 2 threads). share_outputs=False:
        # the results are copies (the request's output buffers are reused
        # by its next inference), made once.
        results = request.infer(feeds, share_inputs=True, share_outputs=False)
        return {
            name: results[port]
            for name, port in zip(session.outputs, compiled.outputs)
        }

    def compiled_for(self, graph_name: str) -> Optional[list]:
        """Which of a graph's compiled models exist (``'one'``: one prompt,
        ``'free'``: any number), None before the graph is opened."""
        session = self._sessions.get(graph_name)
        return None if session is None else session.compiled_keys
