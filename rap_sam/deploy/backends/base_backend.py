"""What every runtime backend shares: one lazily opened session per graph
of an export folder, and the checks on what is fed to it.

Nothing here imports torch: a deployment runs the image encoder and the
prompt decoder with ONNX Runtime or OpenVINO, numpy and OpenCV only.
"""
import importlib
import os
import os.path as osp
from typing import Dict, Mapping, Optional

import numpy as np

from rap_sam.utils.user_errors import UserError

#: The graphs of an export folder, by name (the file is ``<name>.onnx``
#: unless the folder's deploy.json names another).
GRAPH_NAMES = ('image_encoder', 'panoptic_decoder', 'prompt_decoder')

#: What each precision means to a runtime: 'fp32' is exact (to float
#: rounding); 'bf16' lets the runtime compute in bfloat16; 'int8' runs
#: graphs quantized beforehand (rap_sam.deploy.quantize); 'int8-bf16' runs
#: those graphs with their float operations (the decoders, the encoder's
#: unquantized parts) in bfloat16.
PRECISIONS = ('fp32', 'bf16', 'int8', 'int8-bf16')

#: The export folder precisions (deploy.json) each runtime precision runs
#: on: bf16 is a runtime choice on an fp32 (or bf16) folder, int8-bf16 one
#: on an int8 folder.
FOLDER_PRECISIONS = {
    'fp32': ('fp32', ),
    'bf16': ('bf16', 'fp32'),
    'int8': ('int8', ),
    'int8-bf16': ('int8', ),
}


def reads_int8_folder(precision: str) -> bool:
    """Whether a runtime ``precision`` runs on an int8 export folder
    (graphs quantized with calibration images beforehand)."""
    return FOLDER_PRECISIONS.get(precision) == ('int8', )


def runs_bf16(precision: str) -> bool:
    """Whether a runtime ``precision`` computes its float operations in
    bfloat16 (which needs a CPU with AVX-512 BF16 or AMX)."""
    return precision in ('bf16', 'int8-bf16')


class BackendError(UserError):
    """A runtime that is not installed, a graph that is not in the export
    folder, or feeds that do not fit a graph."""


def import_runtime(module: str, package: str, backend: str):
    """``importlib.import_module(module)``, or a one-line
    :class:`BackendError` naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendError(
            f'The {backend} backend needs the {package} package, which '
            f'cannot be imported here ({err}): pip install {package} (the '
            'version pinned in requirements.txt).') from err


class BaseBackend:
    """Runs the graphs of an export folder on one runtime.

    Sessions are opened on first use, so a deployment that only segments
    prompts never loads the panoptic decoder.

    Args:
        export_dir (str): The export folder (``tools/deploy/export.py``).
        graph_files (dict, optional): Graph name -> file name in
            ``export_dir``; default ``<name>.onnx`` for
            :data:`GRAPH_NAMES`.
        precision (str): One of :attr:`precisions`.
        num_threads (int, optional): Threads per graph; the runtime's
            default (all cores) when None.
    """

    #: The backend's name in :func:`build_backend`.
    name = ''
    #: The precisions this runtime runs.
    precisions = ('fp32', )

    def __init__(self,
                 export_dir: str,
                 graph_files: Optional[Mapping[str, str]] = None,
                 precision: str = 'fp32',
                 num_threads: Optional[int] = None):
        if precision not in PRECISIONS:
            raise BackendError(f'precision must be one of {PRECISIONS}, got '
                               f'{precision!r}.')
        if precision not in self.precisions:
            others = ', '.join(
                sorted(name for name, cls in _backend_classes().items()
                       if precision in cls.precisions))
            raise BackendError(
                f'The {self.name} backend does not run {precision} (it runs '
                f'{", ".join(self.precisions)}); {precision} runs on: '
                f'{others}.')
        if num_threads is not None and (isinstance(num_threads, bool)
                                        or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise BackendError(f'num_threads must be a whole number >= 1 or '
                               f'None, got {num_threads!r}.')
        export_dir = os.fspath(export_dir)
        if not osp.isdir(export_dir):
            raise BackendError(f'Export folder not found: {export_dir}')
        if graph_files is None:
            graph_files = {name: f'{name}.onnx' for name in GRAPH_NAMES}
        self.export_dir = export_dir
        self.graph_files = dict(graph_files)
        self.precision = precision
        self.num_threads = num_threads
        self._sessions: Dict[str, object] = {}

    def graph_path(self, graph_name: str) -> str:
        if graph_name not in self.graph_files:
            raise BackendError(
                f'No graph named {graph_name!r} in {self.export_dir}; it '
                f'has {", ".join(sorted(self.graph_files))}.')
        path = osp.join(self.export_dir, self.graph_files[graph_name])
        if not osp.isfile(path):
            raise BackendError(
                f'Graph file not found: {path} (export the model again with '
                'tools/deploy/export.py).')
        return path

    def session(self, graph_name: str):
        """The runtime's loaded graph, opened once."""
        if graph_name not in self._sessions:
            path = self.graph_path(graph_name)
            try:
                self._sessions[graph_name] = self._open(path)
            except Exception as err:  # each runtime has its own types
                message = str(err).strip().splitlines() or [type(err)]
                raise BackendError(
                    f'{self.name} cannot load {path}: {message[-1]} (export '
                    'it again with tools/deploy/export.py and the versions '
                    'pinned in requirements.txt).') from err
        return self._sessions[graph_name]

    def input_names(self, graph_name: str) -> list:
        return self._input_names(self.session(graph_name))

    def run(self, graph_name: str,
            feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one graph.

        Args:
            graph_name (str): ``image_encoder``, ``panoptic_decoder`` or
                ``prompt_decoder``.
            feeds (dict): Input name -> array; names the graph does not
                take are ignored (a decoder is fed all of the encoder's
                outputs).

        Returns:
            dict: Output name -> array, owned by the caller.
        """
        session = self.session(graph_name)
        names = self._input_names(session)
        missing = [name for name in names if name not in feeds]
        if missing:
            raise BackendError(
                f'{self.graph_files[graph_name]} needs the inputs '
                f'{", ".join(missing)}; given {", ".join(sorted(feeds))}.')
        return self._run(
            session,
            {name: np.ascontiguousarray(feeds[name])
             for name in names})

    # Implemented by each runtime.
    def _open(self, path: str):
        raise NotImplementedError

    def _input_names(self, session) -> list:
        raise NotImplementedError

    def _run(self, session, feeds: Dict[str,
                                        np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError


def _backend_classes() -> dict:
    from .builder import BACKENDS
    return BACKENDS
