"""OpenVINO (CPU) backend."""
import warnings
import weakref
from typing import Dict, Optional

import numpy as np

from rap_sam.utils.cpu_features import no_bf16_notice
from rap_sam.utils.user_errors import UserNotice
from .base_backend import BackendError, BaseBackend, import_runtime, runs_bf16

#: The prompt decoder's input whose first axis is the number of prompts
#: (``rap_sam.deploy.graphs.BOXES``; that module imports torch). Its other
#: float inputs are the encoder's feature maps.
PROMPT_INPUT = 'boxes'


def computes_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin has bfloat16 kernels on this CPU
    (without, a bf16 precision hint computes in fp32)."""
    return 'BF16' in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')


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

    def __init__(self, core, path: str, config: dict, bf16_maps: bool = False):
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
        #: Inputs the compiled models take as bfloat16 tensors.
        self.bf16_inputs = []
        if bf16_maps and PROMPT_INPUT in self.inputs:
            model = self._take_bf16_maps(model)
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

    def _take_bf16_maps(self, model):
        """The prompt decoder ``model`` taking its feature maps as
        bfloat16, the precision it computes in."""
        from openvino import Type
        from openvino.preprocess import PrePostProcessor
        self.bf16_inputs = [
            port.get_any_name() for port in model.inputs
            if port.get_any_name() != PROMPT_INPUT
            and port.get_element_type() == Type.f32
        ]
        if not self.bf16_inputs:
            return model
        steps = PrePostProcessor(model)
        for name in self.bf16_inputs:
            steps.input(name).tensor().set_element_type(Type.bf16)
        return steps.build()

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


class _Bf16Maps:
    """The prompt decoder's feature maps in bfloat16, the newest image's
    converted once for all of its clicks.

    A prompt decoder computing in bf16 converts its fp32 feature map at
    every click, a pass over the whole map (1.5 of a click's 8.4 ms at
    800x1344, OpenVINO's profile on 2 AMD EPYC Zen 4 cores). Converted
    once, by OpenVINO's own rounding (the same outputs bit for bit), a
    click took 8.1-10.0 ms against 10.7-11.9. (The panoptic decoder,
    which reads the map once per image, ran slower on a bf16 map: it
    reads the fp32 one.)

    The encoder's newest outputs are handed out as read-only views, so
    that no change in place can make their converted copy stale, and
    matched by identity; the runtime reads their writable arrays (it
    copies a read-only input first: 16 ms more per decode at 800x1344).
    Any other array is converted at each call.
    """

    def __init__(self, ov, core, config: dict):
        self._ov = ov
        self._core = core
        self._config = config
        self._requests = {}  # rank -> infer request of a Convert model
        # input name -> weakrefs to the handed-out view and its array
        self._newest = {}
        self._copies = {}  # input name -> (weakref to the view, tensor)

    def hand_out(self, outputs: Dict[str, np.ndarray]) -> dict:
        """The encoder's ``outputs`` as read-only views, noted as the
        newest maps."""
        views = {}
        for name, array in outputs.items():
            views[name] = array.view()
            views[name].flags.writeable = False
        self._newest = {
            name: (weakref.ref(views[name]), weakref.ref(array))
            for name, array in outputs.items()
        }
        return views

    def _is_newest(self, name: str, array: np.ndarray) -> bool:
        view, _ = self._newest.get(name, (None, None))
        return view is not None and view() is array

    def writable(self, name: str, array: np.ndarray) -> np.ndarray:
        """The array under a view :meth:`hand_out` made, else ``array``."""
        if not self._is_newest(name, array):
            return array
        writable = self._newest[name][1]()
        return array if writable is None else writable

    def bf16(self, name: str, array: np.ndarray):
        """``array`` (the ``name`` input) as a bfloat16 tensor."""
        if not self._is_newest(name, array):
            return self.convert(array)
        source, tensor = self._copies.get(name, (None, None))
        if source is not None and source() is array:
            return tensor
        # The previous image's copy is no longer read: its buffer is
        # reused (no new pages to fault in at every image).
        if tensor is not None and tuple(tensor.shape) != array.shape:
            tensor = None
        tensor = self.convert(array, tensor)
        self._copies[name] = (weakref.ref(array), tensor)
        return tensor

    def convert(self, array: np.ndarray, out=None):
        """A bfloat16 tensor of ``array`` (written into ``out`` when
        given), rounded as a model computing in bf16 rounds its inputs:
        the converting model computes in bf16 too (an explicit Convert in
        an fp32 model rounds otherwise, and the decoders' outputs
        differed)."""
        ov = self._ov
        request = self._requests.get(array.ndim)
        if request is None:
            from openvino import opset13
            x = opset13.parameter(
                ov.PartialShape.dynamic(array.ndim), ov.Type.f32, name='x')
            model = ov.Model([opset13.convert(x, ov.Type.bf16)], [x])
            request = self._core.compile_model(
                model, 'CPU', self._config).create_infer_request()
            self._requests[array.ndim] = request
        if out is None:
            out = ov.Tensor(ov.Type.bf16, ov.Shape(list(array.shape)))
        request.set_output_tensor(0, out)
        request.infer({0: np.asarray(array, np.float32)}, share_inputs=True)
        return out


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
        # On a CPU without bf16 OpenVINO computes in fp32: the maps stay
        # fp32 too.
        self._bf16_maps = None
        if runs_bf16(self.precision) and not computes_bf16(self._core):
            warnings.warn(
                no_bf16_notice(
                    self.precision, 'OpenVINO computes in fp32' +
                    (' (as precision int8 does)'
                     if self.precision == 'int8-bf16' else '')),
                UserNotice,
                stacklevel=2)
        elif runs_bf16(self.precision):
            config = {'INFERENCE_PRECISION_HINT': 'bf16'}
            if self.num_threads is not None:
                config['INFERENCE_NUM_THREADS'] = self.num_threads
            self._bf16_maps = _Bf16Maps(self._ov, self._core, config)

    def run(self, graph_name: str,
            feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outputs = super().run(graph_name, feeds)
        if graph_name == 'image_encoder' and self._bf16_maps is not None:
            return self._bf16_maps.hand_out(outputs)
        return outputs

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
        return _CompiledGraph(
            self._core,
            path,
            self._config(),
            bf16_maps=self._bf16_maps is not None)

    def _input_names(self, session: _CompiledGraph) -> list:
        return session.inputs

    def _run(self, session: _CompiledGraph,
             feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        compiled, request = session.request(feeds)
        maps = self._bf16_maps
        if maps is not None:
            for name, array in feeds.items():
                feeds[name] = maps.bf16(
                    name, array) if name in session.bf16_inputs else \
                    maps.writable(name, array)
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
