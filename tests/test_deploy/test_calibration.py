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

from rap_sam.apis.inputs import IMAGE_EXTS
from rap_sam.deploy.calibration import (CalibrationError, FeedsReader,
                                        UnreadableCalibrationImage,
                                        calibration_images, percentile_ranges,
                                        read_calibration_image)
from rap_sam.utils.user_errors import UserNotice

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


def _photo(path, seed=0, size=(48, 64)):
    """A noisy JPEG or PNG (noise: a JPEG of some kilobytes, so that a cut
    one stops in the middle of its pixels)."""
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _truncated_jpeg(path):
    """A JPEG cut in half, as an interrupted copy leaves it: OpenCV still
    decodes it (grey below the cut), the silent misread to avoid."""
    _photo(path, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert cv2.imread(str(path)) is not None


def _names(paths):
    return [Path(p).name for p in paths]


def test_unreadable_calibration_images_are_skipped_with_one_notice(tmp_path):
    for name in ('a.jpg', 'c.png', 'e.jpg'):
        _photo(tmp_path / name)
    _truncated_jpeg(tmp_path / 'b.jpg')
    (tmp_path / 'd.jpg').write_text('holiday photos: see the other folder\n')
    with pytest.warns(UserNotice) as record:
        images = calibration_images(tmp_path)
    assert _names(images) == ['a.jpg', 'c.png', 'e.jpg']
    assert [str(w.message) for w in record] == [
        f'Calibration folder {tmp_path}: skipped 2 unreadable files: b.jpg '
        '(a truncated JPEG), d.jpg (not an image); calibrating on 3 images.'
    ]
    # No state kept: a second choice says it again (the tools choose once
    # and hand the files on to the quantizer, tests/test_tools).
    with pytest.warns(UserNotice):
        assert calibration_images(tmp_path) == images
    # and each one given reads
    for path in images:
        assert read_calibration_image(path).shape == (48, 64, 3)
    with pytest.raises(UnreadableCalibrationImage) as err:
        read_calibration_image(str(tmp_path / 'b.jpg'))
    assert str(err.value) == (f"Calibration image '{tmp_path}/b.jpg' is a "
                              'truncated JPEG: copy it again, or remove it.')


def test_the_count_asked_is_taken_from_the_readable_images(tmp_path):
    """4 of 10, spread: 00 03 06 09; 03 and 09 unreadable, their nearest
    readable neighbours (after, else before) are taken instead."""
    from rap_sam.deploy import calibration
    for i in range(10):
        _photo(tmp_path / f'{i:02d}.png', seed=i, size=(8, 8))
    _truncated_jpeg(tmp_path / '03.jpg')
    (tmp_path / '03.png').unlink()
    (tmp_path / '09.jpg').write_text('not a picture')
    (tmp_path / '09.png').unlink()
    (tmp_path / '08.png').write_bytes(b'')
    assert _names(calibration.frame_files(tmp_path)) == [
        '00.png', '01.png', '02.png', '03.jpg', '04.png', '05.png', '06.png',
        '07.png', '08.png', '09.jpg'
    ]
    with pytest.warns(UserNotice) as record:
        images = calibration_images(tmp_path, 4)
    assert _names(images) == ['00.png', '04.png', '06.png', '07.png']
    assert [str(w.message) for w in record] == [
        f'Calibration folder {tmp_path}: skipped 3 unreadable files: 03.jpg '
        '(a truncated JPEG), 09.jpg (not an image), 08.png (empty); '
        'calibrating on 4 images.'
    ]
    # fewer readable images than asked: all of them
    with pytest.warns(UserNotice) as record:
        images = calibration_images(tmp_path, 9)
    assert _names(images) == [
        '00.png', '01.png', '02.png', '04.png', '05.png', '06.png', '07.png'
    ]
    assert [str(w.message) for w in record] == [
        f'Calibration folder {tmp_path}: skipped 3 unreadable files: 03.jpg '
        '(a truncated JPEG), 08.png (empty), 09.jpg (not an image); '
        'calibrating on 7 images.'
    ]


def test_a_folder_without_a_readable_image_is_refused(tmp_path):
    _truncated_jpeg(tmp_path / 'a.jpg')
    (tmp_path / 'b.jpg').write_text('text')
    for i in range(5):
        (tmp_path / f'c{i}.png').write_bytes(b'\x89PNG')
    for max_images in (None, 2):
        with pytest.raises(CalibrationError) as err:
            calibration_images(tmp_path, max_images)
        message = str(err.value)
        assert message == (
            f'No readable image in the calibration folder {tmp_path}: none '
            'of its 7 image files can be read (a.jpg (a truncated JPEG), '
            'b.jpg (not an image), c0.png (a truncated PNG), c1.png (a '
            'truncated PNG), c2.png (a truncated PNG) (+2 more)). Put a few '
            'dozen typical photos there (' + ', '.join(IMAGE_EXTS) +
            ' files that open in an image viewer).')
    for name in ('b.jpg', *(f'c{i}.png' for i in range(5))):
        (tmp_path / name).unlink()
    with pytest.raises(
            CalibrationError,
            match='its one image file cannot be read '
            r'\(a.jpg \(a truncated JPEG\)\)'):
        calibration_images(tmp_path)


def test_an_image_above_the_pixel_limit_is_no_unreadable_one(
        tmp_path, monkeypatch):
    """It is readable (the message says how to raise the limit): refused,
    not skipped."""
    _photo(tmp_path / 'a.jpg')
    _photo(tmp_path / 'b.jpg', size=(64, 80))
    monkeypatch.setenv('RAP_SAM_MAX_PIXELS', str(48 * 64))
    with pytest.raises(CalibrationError) as err:
        calibration_images(tmp_path)
    assert not isinstance(err.value, UnreadableCalibrationImage)
    assert str(err.value).startswith(
        f'Calibration image {tmp_path}/b.jpg: {tmp_path}/b.jpg is 80 x 64 '
        'pixels')
