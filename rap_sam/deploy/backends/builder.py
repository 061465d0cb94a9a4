"""Backends by name."""
from typing import Mapping, Optional

from .base_backend import BackendError, BaseBackend
from .onnxruntime_backend import OnnxRuntimeBackend
from .openvino_backend import OpenVINOBackend

#: Runtime backends by name (torch is the model itself, not a backend).
BACKENDS = {
    OnnxRuntimeBackend.name: OnnxRuntimeBackend,
    OpenVINOBackend.name: OpenVINOBackend,
}


def build_backend(
        name: str,
        export_dir: str,
        precision: str = 'fp32',
        num_threads: Optional[int] = None,
        graph_files: Optional[Mapping[str, str]] = None) -> BaseBackend:
    """The backend ``name`` (``onnxruntime`` or ``openvino``) on the graphs
    of ``export_dir``.

    Raises:
        BackendError: an unknown backend or precision, a runtime package
            that is not installed (naming it), a missing folder.
    """
    if name not in BACKENDS:
        raise BackendError(f'Unknown backend {name!r}: use one of '
                           f'{", ".join(BACKENDS)} (or torch in '
                           'RapSAMPredictor).')
    return BACKENDS[name](
        export_dir,
        graph_files=graph_files,
        precision=precision,
        num_threads=num_threads)
