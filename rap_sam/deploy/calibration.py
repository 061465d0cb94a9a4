"""Calibration data for int8 post-training quantization: a folder of
images, preprocessed as the export's deploy.json says, and the feeds each
graph of an export folder takes on them; percentile activation ranges
computed on them in memory independent of their number."""
import os
import os.path as osp
import warnings
from typing import Callable, Iterable, Iterator, List, Mapping, Optional

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from onnxruntime.quantization.calibrate import HistogramCollector

from rap_sam.apis.inputs import (IMAGE_EXTS, UnreadableImageError, frame_files,
                                 read_image)
from rap_sam.datasets.data_checks import damaged_file, file_damage, first_few
from rap_sam.models.utils.prompts import CLICK_RADIUS
from rap_sam.utils.user_errors import UserError, UserNotice

#: Activation bytes one calibration run returns, about: percentile
#: calibration runs the graph in stages of this size (see
#: :func:`percentile_ranges`).
STAGE_BYTES = 256 << 20


class CalibrationError(UserError):
    """A calibration folder that is missing, not a folder, or holds no
    readable image; a calibration image that cannot be used."""


class UnreadableCalibrationImage(CalibrationError):
    """A calibration image file that is no image, or an empty or damaged
    (truncated) one: :func:`calibration_images` skips it.

    Attributes:
        reason (str): Why, in a few words (``'a truncated JPEG'``).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def calibration_images(calib_dir,
                       max_images: Optional[int] = None) -> List[str]:
    """The readable image files directly in ``calib_dir``, sorted by name,
    at most ``max_images`` of them (spread evenly over the sorted list, so
    a folder sorted by scene still gives every scene).

    Each file given is read once here (:func:`read_calibration_image`).
    One that is no image, or an empty or truncated one, is skipped with
    one warning (a :class:`~rap_sam.utils.user_errors.UserNotice` naming
    the first few) and the file beside it taken instead, so that
    ``max_images`` are given whenever the folder holds that many readable
    ones.

    Raises:
        CalibrationError: no folder given, a missing path, a file instead
            of a folder, a folder without images or without a readable one,
            an image above the pixel limit.
    """
    if calib_dir is None:
        raise CalibrationError(
            'int8 quantization needs calibration images: give a folder of '
            'typical photos (--calib DIR), a few dozen is enough.')
    calib_dir = os.fspath(calib_dir)
    if not osp.exists(calib_dir):
        raise CalibrationError(f'Calibration folder not found: {calib_dir}')
    if not osp.isdir(calib_dir):
        raise CalibrationError(
            f'The calibration images must be a folder, not a file: '
            f'{calib_dir}')
    files = [osp.join(calib_dir, name) for name in frame_files(calib_dir)]
    if not files:
        raise CalibrationError(
            f'No images in the calibration folder {calib_dir} (looked for '
            f'{", ".join(IMAGE_EXTS)}): put a few dozen typical photos '
            'there.')
    every = max_images is None or len(files) <= max_images
    if every:
        picks = list(range(len(files)))
    else:
        spread = np.linspace(0, len(files) - 1, max_images).round()
        picks = spread.astype(int).tolist()
    taken = set(picks)
    chosen, skipped = [], []
    for pick in picks:
        # The pick, or (an unreadable one) the nearest file after or before
        # it not yet tried.
        for index in [pick] if every else _nearest_first(pick, len(files)):
            if index != pick and index in taken:
                continue
            taken.add(index)
            try:
                read_calibration_image(files[index])
            except UnreadableCalibrationImage as err:
                skipped.append(f'{osp.basename(files[index])} ({err.reason})')
                continue
            chosen.append(index)
            break
    if not chosen:
        unread = (f'none of its {len(skipped)} image files can be read'
                  if len(skipped) > 1 else 'its one image file cannot be read')
        raise CalibrationError(
            f'No readable image in the calibration folder {calib_dir}: '
            f'{unread} ({first_few(skipped)}). Put a few dozen typical '
            'photos there '
            f'({", ".join(IMAGE_EXTS)} files that open in an image viewer).')
    if skipped:
        notice = (f'Calibration folder {calib_dir}: skipped {len(skipped)} '
                  f'unreadable file{"s" * (len(skipped) > 1)}: '
                  f'{first_few(skipped)}; calibrating on {len(chosen)} '
                  f'image{"s" * (len(chosen) > 1)}.')
        warnings.warn(notice, UserNotice)
    return [files[i] for i in sorted(chosen)]


def _nearest_first(index: int, count: int) -> Iterator[int]:
    """``index``, then the indices in ``[0, count)`` after and before it,
    nearest first (after before before)."""
    yield index
    for step in range(1, count):
        if index + step < count:
            yield index + step
        if index - step >= 0:
            yield index - step


def calibration_prompts(width: int, height: int, grid: int = 3) -> np.ndarray:
    """``[grid * grid + 2, 4]`` prompt boxes on a ``width x height`` resized
    image: clicks on a regular grid, as the model takes them (6-pixel
    boxes), then a box around the centre half and the whole image, so the
    prompt decoder is calibrated on both kinds of prompt."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    points = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    clicks = np.concatenate([points - CLICK_RADIUS, points + CLICK_RADIUS],
                            axis=1)
    boxes = np.array([[width / 4, height / 4, width * 3 / 4, height * 3 / 4],
                      [0, 0, width, height]])
    return np.concatenate([clicks, boxes]).astype(np.float32)


class FeedsReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a sequence of feeds
    (input name -> array), each given as a thunk so that only one image's
    feeds are in memory at a time.

    Args:
        feeds (iterable): Callables returning one feed dict each.
        input_names (list[str]): The graph's inputs; other keys of a feed
            dict are dropped (a decoder gets all encoder outputs).
    """

    def __init__(self, feeds: Iterable[Callable[[], Mapping[str, np.ndarray]]],
                 input_names: List[str]):
        self._feeds = list(feeds)
        self.input_names = list(input_names)
        self._iter: Optional[Iterator] = None
        self.rewind()

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> Optional[dict]:
        make = next(self._iter, None)
        if make is None:
            return None
        feed = make()
        return {name: feed[name] for name in self.input_names}

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Read only feeds ``[start_index, end_index)`` (ONNX Runtime's
        strided calibration, which frees each stride's activations)."""
        self._iter = iter(self._feeds[start_index:end_index])


def read_calibration_image(path: str) -> np.ndarray:
    """The BGR image at ``path``. A file that is no image, or an empty or
    truncated one (OpenCV decodes a truncated JPEG, grey below the cut),
    is an :class:`UnreadableCalibrationImage`; one past the pixel limit a
    :class:`CalibrationError`; both name it."""
    damage = file_damage(path)
    if damage:
        raise UnreadableCalibrationImage(
            f'Calibration image {damaged_file(path)}: copy it again, or '
            'remove it.', damage)
    try:
        return read_image(path)
    except UnreadableImageError as err:
        raise UnreadableCalibrationImage(f'Calibration image {path}: {err}',
                                         'not an image') from err
    except UserError as err:
        raise CalibrationError(f'Calibration image {path}: {err}') from err


def graph_feeds(export_dir: str, images: List[str]) -> dict:
    """Per graph of the fp32 export in ``export_dir``, one feed thunk per
    calibration image: the preprocessed image for the encoder; for the
    decoders the fp32 encoder's outputs on it (recomputed per graph rather
    than kept: at 800 x 1344 they are tens of MB per image), plus
    :func:`calibration_prompts` for the prompt decoder."""
    from .backends import DeployedModel
    model = DeployedModel(export_dir, 'onnxruntime', 'fp32')
    spec = model.spec

    def encoder_feed(path):
        image, _ = model.preprocess(read_calibration_image(path))
        return {spec.image_input: image}

    def decoder_feed(path):
        image, _ = model.preprocess(read_calibration_image(path))
        return model.encode(image)

    def prompt_feed(path):
        image, meta = model.preprocess(read_calibration_image(path))
        feeds = model.encode(image)
        height, width = meta['img_shape'][:2]
        feeds[spec.boxes_input] = calibration_prompts(width, height)
        feeds[spec.img_shape_input] = np.asarray((height, width),
                                                 spec.img_shape_dtype)
        return feeds

    makers = dict(
        image_encoder=encoder_feed,
        panoptic_decoder=decoder_feed,
        prompt_decoder=prompt_feed)
    return {
        name: [lambda path=path, make=make: make(path) for path in images]
        for name, make in makers.items()
    }


def percentile_ranges(model_path: str,
                      reader: CalibrationDataReader,
                      percentile: float,
                      work_dir: str,
                      extra_options: Optional[dict] = None,
                      stage_bytes: int = STAGE_BYTES):
    """ONNX Runtime's percentile calibration of the ONNX graph at
    ``model_path`` on the feeds of ``reader``, in memory independent of
    their number; returns its ``TensorsData`` (the activation ranges), for
    ``quantize_static``'s calibration cache.

    ONNX Runtime's ``PercentileCalibrater`` keeps every activation of every
    feed and histograms them all at once (2048 bins over ``[min, max]`` of
    ``|x|``); its incremental merge instead fixes the bins' width on the
    first feed, which changes the ranges. Here two passes over the feeds,
    each holding one feed's activations at a time, give the same
    histograms: the first finds each tensor's ``|x|`` range over all feeds,
    the second adds up each feed's histogram over that range (counts over
    fixed bins add exactly). So the ranges, and the quantized graph, are
    ONNX Runtime's to the bit, and the feeds may differ in shape (a
    dynamic-shape export). The graph runs twice per feed.

    ONNX Runtime also keeps every activation a run returns until the run
    ends, so the graph runs in consecutive stages (cut where about
    ``stage_bytes`` of activations are returned), each returning its own
    activations and those later stages take: one run holds one stage's.

    Args:
        model_path (str): The (pre-processed) fp32 graph.
        reader (CalibrationDataReader): The feeds; rewound between passes.
        percentile (float): The share of ``|x|`` covered, in percent.
        work_dir (str): A folder for the stages' graphs.
        extra_options (dict, optional): Calibrator options as
            ``quantize_static`` passes them (``num_bins``, ``symmetric``).
        stage_bytes (int): Activation bytes returned per stage, about
            (estimated on the first feed's shapes).
    """
    from pathlib import Path

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import (CalibrationMethod,
                                                    PercentileCalibrater,
                                                    TensorsData)
    from onnxruntime.quantization.registry import (QDQRegistry,
                                                   QLinearOpsRegistry)

    options = dict(extra_options or {}, percentile=percentile)
    # As create_calibrator makes it (its defaults), without the graph
    # returning all activations at once that it would add.
    calibrator = PercentileCalibrater(
        Path(model_path),
        augmented_model_path=osp.join(work_dir, 'augmented.onnx'),
        symmetric=options.get('symmetric', True),
        num_bins=options.get('num_bins', 2048),
        percentile=options['percentile'])
    if not calibrator.symmetric:
        # The asymmetric collector merges by widening its bins, which
        # depends on the order of the feeds: not reproduced here.
        raise ValueError('percentile_ranges histograms |x| only '
                         '(symmetric=True, ONNX Runtime\'s default).')
    model = calibrator.model  # shape-inferred, as the calibrator runs it
    calibrator.op_types_to_calibrate = list(
        set(QLinearOpsRegistry) | set(QDQRegistry))
    # The tensors quantize_static calibrates: inputs and outputs of every
    # op type it can quantize.
    calibrated, _ = calibrator.select_tensors_to_calibrate(model)
    reader.rewind()
    first = reader.get_next()
    if first is None:
        raise ValueError('No data is collected.')
    stages = _stages(model, calibrated, first, stage_bytes)
    del first
    runs = []
    for index, (nodes, outputs) in enumerate(stages):
        if not outputs:
            continue  # nothing calibrated or taken later
        path = osp.join(work_dir, f'stage{index}.onnx')
        onnx.save(_stage_model(model, nodes, outputs), path)
        session_options = ort.SessionOptions()
        # As ONNX Runtime's calibrator runs it: every node as it is.
        session_options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # Each session's arena would keep its stage's peak for good: the
        # stages' peaks would add up to the whole graph's.
        session_options.enable_cpu_mem_arena = False
        session = ort.InferenceSession(
            path, session_options, providers=['CPUExecutionProvider'])
        runs.append((session, [i.name for i in session.get_inputs()], outputs))
    del model, calibrator.model  # the sessions hold the weights
    # The last stage that takes each tensor (a graph input: any stage).
    last_use = {
        name: index
        for index, (_, inputs, _) in enumerate(runs)
        for name in inputs
    }

    def activations():
        """Per feed, (name, activation) for each calibrated tensor."""
        reader.rewind()
        for feed in iter(reader.get_next, None):
            live = dict(feed)
            for name, array in feed.items():
                if name in calibrated:
                    yield name, array
            for index, (session, inputs, outputs) in enumerate(runs):
                values = session.run(outputs,
                                     {name: live[name]
                                      for name in inputs})
                for name, array in zip(outputs, values):
                    if last_use.get(name, -1) > index:
                        live[name] = array
                    if name in calibrated:
                        yield name, array
                del values
                for name in [n for n in live if last_use.get(n, -1) <= index]:
                    del live[name]

    # Pass 1: per tensor, min and max of x (the ranges' clamp) and of |x|
    # (the histograms' span), as ONNX Runtime finds them on all feeds.
    spans = {}
    for name, array in activations():
        if not array.size:
            zero = np.array(0, dtype=array.dtype)
            stats = [zero, zero, None, None]
        else:
            absolute = np.absolute(array)
            stats = [
                np.nanmin(array),
                np.nanmax(array),
                absolute.min(),
                absolute.max()
            ]
            del absolute
        old = spans.setdefault(name, stats)
        if old is not stats:
            old[:2] = min(old[0], stats[0]), max(old[1], stats[1])
            if old[2] is None:
                old[2:] = stats[2:]
            elif stats[2] is not None:
                old[2:] = min(old[2], stats[2]), max(old[3], stats[3])
    # Pass 2: one histogram per tensor over the span of |x| on all feeds.
    bins = calibrator.num_bins
    hists = {}
    for name, array in activations():
        low, high = spans[name][2:]
        if low is None:
            continue
        counts, edges = np.histogram(
            np.absolute(array), bins, range=(low, high))
        if name in hists:
            hists[name][0] += counts
        else:
            hists[name] = [counts, edges.astype(array.dtype)]
    for name, (low, high, abs_low, _) in spans.items():
        if abs_low is None:  # empty on every feed, as ONNX Runtime does it
            counts, edges = np.histogram(np.zeros(0, low.dtype), bins)
            hists[name] = [counts, edges.astype(low.dtype)]
        hists[name] += [low, high]
    collector = HistogramCollector(
        method='percentile',
        symmetric=True,
        num_bins=bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=calibrator.percentile,
        scenario=calibrator.scenario)
    collector.histogram_dict = {
        name: tuple(value)
        for name, value in hists.items()
    }
    return TensorsData(CalibrationMethod.Percentile,
                       collector.compute_collection_result())


def _stages(model, calibrated, feed: Mapping[str, np.ndarray],
            stage_bytes: int) -> List[tuple]:
    """Cut ``model``'s nodes (in their topological order) into consecutive
    stages returning about ``stage_bytes`` of ``calibrated`` tensors each
    (sizes from shape inference on ``feed``'s shapes); per stage its nodes
    and the tensors it returns: its calibrated ones and those later stages
    take. Cuts only where every tensor crossing has a known type."""
    import onnx
    graph = model.graph
    if any(
            attr.type in (onnx.AttributeProto.GRAPH,
                          onnx.AttributeProto.GRAPHS) for node in graph.node
            for attr in node.attribute):
        # A subgraph reads outer tensors without naming them as inputs.
        return [(list(graph.node), _stage_outputs(graph.node, calibrated, ()))]
    sizes = _tensor_bytes(model, feed)
    typed = {vi.name
             for vi in graph.value_info
             } | {vi.name
                  for vi in graph.input} | {vi.name
                                            for vi in graph.output}
    last = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last[name] = index
    for out in graph.output:
        last[out.name] = len(graph.node)
    stages, start, held = [], 0, 0
    for index, node in enumerate(graph.node):
        held += sum(
            sizes.get(name, 0) for name in node.output if name in calibrated)
        if held < stage_bytes or index + 1 == len(graph.node):
            continue
        crossing = {
            name
            for n in graph.node[:index + 1]
            for name in n.output if last.get(name, -1) > index
        }
        if not crossing <= typed:
            continue
        nodes = list(graph.node[start:index + 1])
        stages.append((nodes, _stage_outputs(nodes, calibrated, crossing)))
        start, held = index + 1, 0
    nodes = list(graph.node[start:])
    stages.append((nodes, _stage_outputs(nodes, calibrated, ())))
    return stages


def _stage_outputs(nodes, calibrated, crossing) -> List[str]:
    """What a stage of ``nodes`` returns: the tensors it makes that are
    calibrated or ``crossing`` to later stages."""
    return [
        name for node in nodes for name in node.output
        if name and (name in calibrated or name in crossing)
    ]


def _stage_model(model, nodes, outputs):
    """``nodes`` of ``model`` as a model of their own, taking what they
    read from outside them and returning ``outputs``."""
    import onnx
    graph = model.graph
    made = {name for node in nodes for name in node.output}
    read = list(
        dict.fromkeys(name for node in nodes for name in node.input
                      if name and name not in made))
    weights = {init.name: init for init in graph.initializer}
    types = {
        vi.name: vi
        for vi in [*graph.value_info, *graph.input, *graph.output]
    }
    stage = onnx.helper.make_model(
        onnx.helper.make_graph(
            nodes, graph.name,
            [types[name] for name in read if name not in weights],
            [types[name] for name in outputs],
            [weights[name] for name in read if name in weights]),
        opset_imports=model.opset_import,
        ir_version=model.ir_version)
    stage.functions.extend(model.functions)
    return stage


def _tensor_bytes(model, feed: Mapping[str, np.ndarray]) -> dict:
    """Bytes of each tensor of ``model`` whose shape inference gives a
    size, the graph's inputs shaped as in ``feed``."""
    import onnx

    def sizes(graph):
        found = {}
        for vi in [*graph.value_info, *graph.output]:
            tensor = vi.type.tensor_type
            dims = [dim.dim_value for dim in tensor.shape.dim]
            if tensor.HasField('shape') and all(
                    dim.HasField('dim_value') for dim in tensor.shape.dim):
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(
                    tensor.elem_type).itemsize
                found[vi.name] = int(np.prod(dims)) * itemsize
        return found

    found = sizes(model.graph)
    if len(found) < len(model.graph.value_info) + len(model.graph.output):
        # Free sizes (a dynamic-shape export): inferred on the feed's.
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for vi in probe.graph.input:
            if vi.name in feed:
                shape = vi.type.tensor_type.shape
                del shape.dim[:]
                for size in feed[vi.name].shape:
                    shape.dim.add().dim_value = size
        del probe.graph.value_info[:]
        found.update(sizes(onnx.shape_inference.infer_shapes(probe).graph))
    return found
