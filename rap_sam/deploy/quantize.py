"""Approximate exports made from an fp32 export folder: int8 and bf16.

``int8`` is post-training static quantization with ONNX Runtime's
``quantize_static``: QDQ format (QuantizeLinear / DequantizeLinear pairs
around the weights and activations of Conv, MatMul ...; standard ONNX, so
OpenVINO runs it with its own int8 kernels too), int8 weights per output
channel, uint8 activations whose ranges are those seen on a folder of
calibration images preprocessed exactly as deploy.json says: their min and
max (``calibration='minmax'``, the default) or :data:`CALIB_PERCENTILE` of
their absolute values (``calibration='percentile'``: less loss on the toy
model, twice the calibration runs). Neither's memory grows with the number
of images. Three choices make the int8 encoder faster: uint8 activations
(:data:`ACTIVATION_TYPE`: ONNX Runtime fuses QDQ convolutions into its
int8 kernels on x86 only for uint8 activations with int8 weights; with
int8 activations it ran float convolutions between dequantize and quantize
steps, slower than fp32), the transposed convolutions' inputs quantized
without a zero point (:func:`zero_point_free_inputs`; with one, OpenVINO
runs them in fp32), and the deformable convolutions' sampling after their
int8 GEMM left fp32 (:func:`float_sampling_nodes`: int8 there only added
quantize steps between gathers and sums).

``bf16`` needs no new graph: it is a compile-time choice of the runtime
(OpenVINO's ``INFERENCE_PRECISION_HINT``; torch's autocast). ONNX Runtime
has no bfloat16 CPU kernels (measured with onnxruntime 1.31: MatMul, Add,
Relu, Softmax have none, and ONNX's Conv does not take bfloat16), so a
bf16 folder is for OpenVINO. The folder holds the same graphs, with
deploy.json saying bf16, so that a runtime opened on it computes in bf16.

Both write a NEW folder; the fp32 export is never touched.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from rap_sam.utils.user_errors import UserError

#: Approximate precisions, and the default folder suffix for each.
APPROXIMATE_PRECISIONS = ('bf16', 'int8')

#: The graphs int8 quantizes by default (see :func:`quantize_export`).
DEFAULT_INT8_GRAPHS = ('image_encoder', )

#: Calibration images used at most (spread over the folder): activation
#: ranges settle after a few dozen images, and each costs an fp32 run of
#: every graph quantized.
DEFAULT_MAX_CALIB_IMAGES = 32

#: Activation range calibrations: ``'minmax'`` keeps a running min and
#: max per tensor; ``'percentile'`` covers :data:`CALIB_PERCENTILE` of the
#: values' magnitudes, which on the toy model's val set lost 0.6 PQ points
#: against min / max's 1.7. Percentile ranges are ONNX Runtime's to the
#: bit, computed one image at a time in two passes and the graph in stages
#: (:func:`~rap_sam.deploy.calibration.percentile_ranges`) rather than by
#: its calibrator, which holds every activation of every image (R50
#: encoder at 512 x 864: 3.5 GB peak with 1 image, 1.8 GB now with 1 to 8);
#: ONNX Runtime's incremental histograms, which fix the bins on the first
#: image, lost 2.4 points.
CALIBRATIONS = ('minmax', 'percentile')
#: What :func:`quantize_export` and ``tools/deploy/export.py`` calibrate
#: with unless told.
DEFAULT_CALIBRATION = 'minmax'
CALIB_PERCENTILE = 99.99

#: Activations' quantized type, as ONNX Runtime's ``QuantType`` names it:
#: uint8 (U8S8 with the int8 weights), the pair ONNX Runtime's x86 CPU
#: kernels take (R50 encoder at 512 x 864, 2 threads: 1.9x faster than int8
#: activations there); OpenVINO runs both alike.
ACTIVATION_TYPE = 'QUInt8'

#: Bits of the int8 weights: 8, or 7 (ONNX Runtime's ``reduce_range``:
#: weights in [-64, 64]) for CPUs without VNNI, whose x86 int8 product
#: (``vpmaddubsw``) adds each pair of uint8 x int8 products in int16 and
#: saturates there with full-range weights. Measured on an AVX2-only AMD
#: EPYC (toy model, percentile ranges, 2026-12-04): with 8-bit weights ONNX
#: Runtime's int8 encoder was 6.6 % (relative L2) away from the same QDQ
#: graph computed in float, PQ -1.65 (minmax -6.2); with 7-bit weights
#: 0.08 %, PQ -0.17.
INT8_WEIGHT_BITS = (8, 7)

#: The model's modules with weights, which ``modules`` of
#: :func:`quantize_export` choose from (the first part of the exported
#: weights' names).
INT8_MODULES = ('backbone', 'neck', 'panoptic_head')


class QuantizeError(UserError):
    """A precision that cannot be made, or an output folder that cannot be
    written."""


def quantize_export(export_dir: str,
                    precision: str,
                    calib_dir: Optional[str] = None,
                    out_dir: Optional[str] = None,
                    graphs: Optional[Sequence[str]] = None,
                    modules: Optional[Sequence[str]] = None,
                    calibration: str = DEFAULT_CALIBRATION,
                    max_calib_images: int = DEFAULT_MAX_CALIB_IMAGES,
                    weight_bits: int = 8,
                    overwrite: bool = False) -> str:
    """Make the ``precision`` variant of the fp32 export in ``export_dir``.

    Args:
        export_dir (str): An fp32 export folder (``tools/deploy/export.py``).
        precision (str): ``'int8'`` or ``'bf16'``.
        calib_dir (str or list[str], optional): int8: a folder of typical
            images (jpg, png ...), at most ``max_calib_images`` of them
            used; or the image files
            :func:`~rap_sam.deploy.calibration.calibration_images` chose
            from one (a tool that checked the folder before a slow export
            hands its choice on instead of choosing, and warning, again).
        out_dir (str, optional): Where to write; default ``export_dir``
            with ``_int8`` / ``_bf16`` appended. Never ``export_dir``.
        graphs (list[str], optional): int8: the graphs to quantize; the
            others are copied as they are. Default
            :data:`DEFAULT_INT8_GRAPHS`, the image encoder: it is nearly
            all of the work, and int8 keeps its accuracy there (the
            decoders' products of two activations lose more, see
            docs/deploy.md).
        modules (list[str], optional): int8: quantize only the layers of
            these modules of the model (of :data:`INT8_MODULES`:
            ``'backbone'``, ``'neck'``, ``'panoptic_head'``, the prefixes of
            their weights' names); default all layers of the graphs
            quantized.
        calibration (str): int8: ``'minmax'`` or ``'percentile'`` activation
            ranges (see :data:`CALIBRATIONS`).
        max_calib_images (int): Calibration images used at most.
        weight_bits (int): int8: 8, or 7 for CPUs without VNNI (see
            :data:`INT8_WEIGHT_BITS`); written in deploy.json.
        overwrite (bool): Replace a non-empty ``out_dir``.

    Returns:
        str: ``out_dir``.

    Raises:
        QuantizeError: an unknown precision, graph or module (before any
            work), ``out_dir`` being the
            fp32 folder, a non-empty ``out_dir`` without ``overwrite``.
        CalibrationError: int8 without a usable calibration folder.
        UserError: an export folder that is missing or invalid (the
            deploy.json reader's message).
    """
    from .deploy_spec import make_work_folder, read_deploy_spec, replace_folder
    if precision not in APPROXIMATE_PRECISIONS:
        raise QuantizeError(
            f'precision must be one of {", ".join(APPROXIMATE_PRECISIONS)} '
            f'to make from an fp32 export, got {precision!r}.')
    if precision == 'int8':
        modules = check_int8_modules(modules)
    export_dir = os.fspath(export_dir)
    spec = read_deploy_spec(export_dir)
    if spec.precision != 'fp32':
        raise QuantizeError(
            f'{osp.join(export_dir, "deploy.json")} is a {spec.precision} '
            'export: make approximate exports from the fp32 one.')
    if out_dir is None:
        out_dir = osp.normpath(export_dir) + f'_{precision}'
    out_dir = os.fspath(out_dir)
    _check_out_dir(export_dir, out_dir, overwrite)
    images = []
    if precision == 'int8':
        from .calibration import calibration_images
        if isinstance(max_calib_images, bool) or not isinstance(
                max_calib_images, int) or max_calib_images < 1:
            raise QuantizeError('max_calib_images must be a whole number >= '
                                f'1, got {max_calib_images!r}.')
        if calibration not in CALIBRATIONS:
            raise QuantizeError(
                f'calibration must be one of {", ".join(CALIBRATIONS)}, got '
                f'{calibration!r}.')
        check_weight_bits(weight_bits)
        if isinstance(calib_dir, (list, tuple)):
            images = list(calib_dir)
        else:
            images = calibration_images(calib_dir, max_calib_images)
        graphs = tuple(DEFAULT_INT8_GRAPHS if graphs is None else graphs)
        unknown = sorted(set(graphs) - set(spec.graph_names))
        if unknown:
            raise QuantizeError(
                f'No graph named {", ".join(unknown)} in {export_dir}: '
                f'choose from {", ".join(spec.graph_names)}.')
    # Written beside out_dir and moved into place at the end, so that an
    # error or a kill leaves no half-written export under its name.
    work = make_work_folder(osp.dirname(osp.realpath(out_dir)), 'quantize')
    try:
        if precision == 'int8':
            quantized = _quantize_int8(export_dir, spec, work, images, graphs,
                                       modules, calibration, weight_bits)
        else:
            quantized = ()
        for name in spec.graph_names:
            if name not in quantized:
                shutil.copy2(
                    osp.join(export_dir, spec.graph_file(name)),
                    osp.join(work, spec.graph_file(name)))
        spec.with_precision(
            precision,
            quantized_graphs=quantized,
            calibration=len(images) if images else None,
            weight_bits=weight_bits if quantized else None).write(work)
        replace_folder(work, out_dir, overwrite)
    finally:
        if osp.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return out_dir


def check_weight_bits(weight_bits) -> int:
    """``weight_bits`` if one of :data:`INT8_WEIGHT_BITS`.

    Raises:
        QuantizeError: any other value.
    """
    if isinstance(weight_bits, bool) or weight_bits not in INT8_WEIGHT_BITS:
        raise QuantizeError(
            'weight_bits must be 8, or 7 for CPUs without VNNI, got '
            f'{weight_bits!r}.')
    return weight_bits


def check_int8_modules(modules: Optional[Sequence[str]],
                       option: str = 'modules') -> Optional[tuple]:
    """``modules`` as a tuple (``None`` stays ``None``: all layers), each
    one of :data:`INT8_MODULES`; said before any work, since a name that
    fits no layer would only show after the calibration runs, and beside a
    valid one not at all. ``option`` names the argument in the message.

    Raises:
        QuantizeError: an unknown name, or none.
    """
    if modules is None:
        return None
    modules = (modules, ) if isinstance(modules, str) else tuple(modules)
    unknown = [m for m in modules if m not in INT8_MODULES]
    if unknown or not modules:
        what = (f'no module {", ".join(repr(m) for m in unknown)} in the '
                'model' if unknown else 'no module named')
        raise QuantizeError(
            f'{option}: {what}; choose from {", ".join(INT8_MODULES)}.')
    return modules


def _check_out_dir(export_dir: str, out_dir: str, overwrite: bool) -> None:
    from .deploy_spec import output_folder_problem
    problem = output_folder_problem(out_dir)
    if problem:
        raise QuantizeError(problem)
    source, target = osp.realpath(export_dir), osp.realpath(out_dir)
    if source == target or osp.commonpath([source, target
                                           ]) in (source, target):
        raise QuantizeError(
            f'The output folder {out_dir} is, holds or is inside the fp32 '
            f'export {export_dir}: choose a folder beside it (the fp32 '
            'export is kept as it is).')
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise QuantizeError(f'{out_dir} is a file, not an export folder.')
    if not osp.isdir(out_dir) or not os.listdir(out_dir):
        return
    if not overwrite:
        raise QuantizeError(
            f'{out_dir} is not empty: choose another folder or pass '
            'overwrite=True (--overwrite).')
    if not osp.isfile(osp.join(out_dir, 'deploy.json')):
        # overwrite replaces an export, never any other folder.
        raise QuantizeError(
            f'{out_dir} is not an export folder (no deploy.json): not '
            'replacing it; choose another folder.')
    from .deploy_spec import foreign_entries, list_names
    foreign = foreign_entries(out_dir)
    if foreign:
        raise QuantizeError(
            f"{out_dir} holds files that are not the export's "
            f'({list_names(foreign)}), '
            'which overwrite would delete: move them out or choose another '
            'folder.')


def _quantize_int8(export_dir, spec, work, images, graphs, modules,
                   calibration, weight_bits) -> tuple:
    """Quantize ``graphs`` into ``work``; returns their names."""
    from .calibration import graph_feeds
    feeds = graph_feeds(export_dir, images)
    for name in graphs:
        quantize_graph(
            osp.join(export_dir, spec.graph_files[name]),
            osp.join(work, spec.graph_files[name]),
            feeds[name],
            modules=modules,
            calibration=calibration,
            weight_bits=weight_bits)
    return tuple(graphs)


def quantize_graph(src: str,
                   dst: str,
                   feeds: Sequence[Callable[[], Mapping[str, np.ndarray]]],
                   per_channel: bool = True,
                   modules: Optional[Sequence[str]] = None,
                   calibration: str = 'minmax',
                   weight_bits: int = 8) -> None:
    """Static QDQ int8 quantization of the ONNX graph ``src`` into ``dst``,
    its activation ranges calibrated (``'minmax'`` or ``'percentile'``) on
    ``feeds`` (thunks, each giving one run's inputs by name; inputs the
    graph does not take are dropped). ``modules``:
    quantize only the nodes with a weight of these modules (named
    ``module.`` ... as the exporter keeps parameter names); ``weight_bits``:
    8, or 7 (:data:`INT8_WEIGHT_BITS`)."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .calibration import FeedsReader
    with tempfile.TemporaryDirectory() as tmp:
        # ONNX Runtime's advice: shapes inferred and the graph optimised
        # (constants folded, ops fused) first, so that what is quantized is
        # what runs.
        prepared = osp.join(tmp, 'prepared.onnx')
        quant_pre_process(src, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared).graph
        weights = {init.name for init in graph.initializer}
        reader = FeedsReader(
            feeds, [i.name for i in graph.input if i.name not in weights])
        nodes = None
        if modules is not None:
            prefixes = tuple(f'{m}.' for m in modules)
            nodes = [
                node.name for node in graph.node if any(
                    i in weights and i.startswith(prefixes)
                    for i in node.input)
            ]
            if not nodes:
                raise QuantizeError(
                    f'{src} has no layer of {", ".join(modules)}: name '
                    'modules of the model (backbone, neck, panoptic_head).')
        options = dict(
            CalibPercentile=CALIB_PERCENTILE,
            TensorQuantOverrides=zero_point_free_inputs(graph, nodes))
        cache = None
        if calibration == 'percentile':
            # ONNX Runtime's own percentile calibration holds every
            # activation of every feed; percentile_ranges computes the same
            # ranges one feed at a time, handed over as a calibration cache.
            from onnxruntime.quantization.calibrate import save_tensors_data

            from .calibration import percentile_ranges
            ranges = percentile_ranges(prepared, reader, CALIB_PERCENTILE, tmp)
            cache = osp.join(tmp, 'ranges.json')
            save_tensors_data(ranges, cache)
            reader = None
        quantize_static(
            prepared,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            nodes_to_quantize=nodes,
            nodes_to_exclude=float_sampling_nodes(graph),
            activation_type=getattr(QuantType, ACTIVATION_TYPE),
            weight_type=QuantType.QInt8,
            # minmax: the calibration graph reduces each tensor to its min
            # and max as it runs.
            calibrate_method=CalibrationMethod.Percentile
            if calibration == 'percentile' else CalibrationMethod.MinMax,
            calibration_cache_path=cache,
            reduce_range=check_weight_bits(weight_bits) == 7,
            extra_options=options)


#: Operators whose int8 kernel in OpenVINO's CPU plugin takes no activation
#: zero point: given one, OpenVINO dequantizes and runs them in fp32
#: (ConvTranspose, measured with OpenVINO 2026.4: 3 to 4x slower, 18 % of
#: the int8 R50 encoder at 512 x 864).
ZERO_POINT_FREE_OPS = ('ConvTranspose', )


def zero_point_free_inputs(graph,
                           nodes: Optional[Sequence[str]] = None) -> dict:
    """``TensorQuantOverrides`` for ``quantize_static`` giving the
    activation input of each :data:`ZERO_POINT_FREE_OPS` node of ``graph``
    (those in ``nodes`` when given) a zero point of 0: uint8 after a ReLU
    (its range starts at 0, so no level is lost), symmetric int8
    otherwise."""
    from onnxruntime.quantization import QuantType
    producers = {out: node for node in graph.node for out in node.output}
    overrides = {}
    for node in graph.node:
        if node.op_type not in ZERO_POINT_FREE_OPS or (nodes is not None and
                                                       node.name not in nodes):
            continue
        name = node.input[0]
        producer = producers.get(name)
        if producer is not None and producer.op_type == 'Relu':
            overrides[name] = [dict(quant_type=QuantType.QUInt8)]
        else:
            overrides[name] = [
                dict(quant_type=QuantType.QInt8, symmetric=True)
            ]
    return overrides


#: The operators of a deformable convolution's export that carry its
#: weights; the rest of its nodes sample (gather, bilinear weights, sums).
WEIGHTED_OPS = ('Conv', 'ConvTranspose', 'MatMul')


def float_sampling_nodes(graph) -> list:
    """The sampling nodes of each deformable convolution in ``graph`` (the
    scope of a MatMul with a weight, ``/deconv/deform_conv1/`` ...), left in
    fp32: the gathers of the GEMM's rows and their bilinear sums."""
    weights = {init.name for init in graph.initializer}
    scopes = tuple(
        node.name.rsplit('/', 1)[0] + '/' for node in graph.node
        if node.op_type == 'MatMul' and any(
            i in weights for i in node.input) and '/' in node.name)
    if not scopes:
        return []
    return [
        node.name for node in graph.node
        if node.name.startswith(scopes) and node.op_type not in WEIGHTED_OPS
    ]
