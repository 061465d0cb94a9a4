"""Percentile calibration one feed at a time, in stages
(rap_sam.deploy.calibration.percentile_ranges): ONNX Runtime's ranges to
the bit, and feeds of several shapes."""
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.calibrate import (CalibrationMethod,
                                                HistogramCollector,
                                                create_calibrator)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from rap_sam.deploy.calibration import (FeedsReader, calibration_images,
                                        percentile_ranges)

PERCENTILE = 99.99


def _graph(path):
    """conv -> relu -> conv -> + (the first conv's output: a tensor that
    crosses stages) -> pool -> matmul, on a free-sized image."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(
            rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node('Conv', ['x', 'w1'], ['a'], pads=[1] * 4),
        helper.make_node('Relu', ['a'], ['b']),
        helper.make_node('Conv', ['b', 'w2'], ['c'], pads=[1] * 4),
        helper.make_node('Add', ['c', 'a'], ['d']),
        helper.make_node('GlobalAveragePool', ['d'], ['e']),
        helper.make_node('Flatten', ['e'], ['f']),
        helper.make_node('MatMul', ['f', 'w3'], ['y']),
    ]
    graph = helper.make_graph(nodes, 'g', [
        helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 'h', 'w'])
    ], [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])], [
        weight('w1', 8, 3, 3, 3),
        weight('w2', 8, 8, 3, 3),
        weight('w3', 8, 4)
    ])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def _feeds(shapes):
    rng = np.random.default_rng(1)
    arrays = [(rng.standard_normal(shape) * (i + 1)).astype(np.float32)
              for i, shape in enumerate(shapes)]
    return FeedsReader([lambda a=a: {'x': a} for a in arrays], ['x'])


def _onnxruntime_calibrator(model, tmp_path):
    return create_calibrator(
        Path(model),
        list(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(tmp_path / 'augmented.onnx'),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options=dict(percentile=PERCENTILE))


def _assert_same(ours, theirs):
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for name in theirs.keys():
        assert ours[name].range_value == theirs[name].range_value, name
        assert ours[name].hist == theirs[name].hist, name
        assert ours[name].bins == theirs[name].bins, name


@pytest.mark.parametrize('stage_bytes', [1 << 40, 1])
def test_percentile_ranges_are_onnxruntimes(tmp_path, stage_bytes):
    """Same ranges as ONNX Runtime's calibrator holding all four feeds, in
    one stage or one node per stage."""
    model = _graph(tmp_path / 'g.onnx')
    reader = _feeds([(1, 3, 16, 24)] * 4)
    calibrator = _onnxruntime_calibrator(model, tmp_path)
    calibrator.collect_data(reader)
    theirs = calibrator.compute_data()
    assert sorted(theirs.keys()) == list('abcdefxy')
    ours = percentile_ranges(
        model, reader, PERCENTILE, str(tmp_path), stage_bytes=stage_bytes)
    _assert_same(ours, theirs)
    stages = sorted(p.name for p in tmp_path.glob('stage*.onnx'))
    assert len(stages) == (1 if stage_bytes > 1 else 7)
    # Ranges from the first feed alone differ: the comparison sees feeds.
    calibrator = _onnxruntime_calibrator(model, tmp_path)
    reader.set_range(0, 1)
    calibrator.collect_data(reader)
    first = calibrator.compute_data()
    assert any(first[name].range_value != theirs[name].range_value
               for name in theirs.keys())


def test_percentile_ranges_of_feeds_of_several_shapes(tmp_path):
    """Feeds of three sizes (a dynamic-shape export's images), which ONNX
    Runtime's calibrator cannot stack: the ranges are those its histogram
    collector gives on all their values at once."""
    model = _graph(tmp_path / 'g.onnx')
    shapes = [(1, 3, 16, 24), (1, 3, 8, 8), (1, 3, 24, 16)]
    reader = _feeds(shapes)
    calibrator = _onnxruntime_calibrator(model, tmp_path)
    session = calibrator.infer_session
    names = [out.name for out in session.get_outputs()]
    values = {}
    for feed in reader:
        for name, array in zip(names, session.run(None, feed)):
            if name in calibrator.tensors_to_calibrate:
                values.setdefault(name, []).append(array.ravel())
    assert {values['a'][i].size for i in range(3)} == {8 * 16 * 24, 8 * 64}
    collector = HistogramCollector(
        method='percentile',
        symmetric=True,
        num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=PERCENTILE,
        scenario=calibrator.scenario)
    collector.collect({
        name: np.concatenate(arrays)
        for name, arrays in values.items()
    })
    theirs = collector.compute_collection_result()
    ours = percentile_ranges(
        model, reader, PERCENTILE, str(tmp_path), stage_bytes=1)
    assert sorted(ours.keys()) == sorted(theirs)
    for name, (low, high, *hist) in theirs.items():
        assert ours[name].range_value == (low, high), name
        assert [ours[name].hist, ours[name].bins] == hist, name


def test_calibration_images_are_the_folders_frames(tmp_path):
    """The folder's image files in number order, with no hidden file (the
    ``._NAME`` files macOS leaves on USB drives are no JPEGs) or folder."""
    img = np.zeros((8, 8, 3), np.uint8)
    for name in ('p10.jpg', 'p2.png', 'p1.jpg'):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / '._p1.jpg').write_bytes(b'\x00\x05\x16\x07')
    (tmp_path / 'old.jpg').mkdir()
    (tmp_path / 'notes.txt').write_text('x')
    assert calibration_images(tmp_path) == [
        str(tmp_path / name) for name in ('p1.jpg', 'p2.png', 'p10.jpg')
    ]
