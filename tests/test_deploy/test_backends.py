"""The runtime backends (ONNX Runtime, OpenVINO) on small graphs made
here, and the numpy / OpenCV preprocessing against mmdet's pipeline."""
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
from helpers import REPO
from onnx import TensorProto, helper

from rap_sam.deploy.backends import (BACKENDS, FOLDER_PRECISIONS, PRECISIONS,
                                     BackendError, ImagePreprocessor,
                                     build_backend, reads_int8_folder,
                                     runs_bf16)
from rap_sam.utils.user_errors import UserError, UserNotice


def _save(graph, path):
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_toy_graphs(folder):
    """An 'encoder' (feat = 2 * image + 1, H and W dynamic) and a 'prompt
    decoder' (score = boxes @ w + mean(feat), N dynamic): known answers
    for every backend."""
    image = helper.make_tensor_value_info('image', TensorProto.FLOAT,
                                          [1, 3, 'H', 'W'])
    feat = helper.make_tensor_value_info('feat', TensorProto.FLOAT,
                                         [1, 3, 'H', 'W'])
    two = helper.make_tensor('two', TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor('one', TensorProto.FLOAT, [], [1.0])
    _save(
        helper.make_graph([
            helper.make_node('Mul', ['image', 'two'], ['twice']),
            helper.make_node('Add', ['twice', 'one'], ['feat']),
        ], 'encoder', [image], [feat], [two, one]),
        osp.join(folder, 'image_encoder.onnx'))
    boxes = helper.make_tensor_value_info('boxes', TensorProto.FLOAT, ['N', 4])
    score = helper.make_tensor_value_info('score', TensorProto.FLOAT, ['N', 1])
    weight = helper.make_tensor('w', TensorProto.FLOAT, [4, 1],
                                [1.0, -2.0, 0.5, 0.25])
    _save(
        helper.make_graph([
            helper.make_node('MatMul', ['boxes', 'w'], ['proj']),
            helper.make_node('ReduceMean', ['feat'], ['mean'], keepdims=0),
            helper.make_node('Add', ['proj', 'mean'], ['score']),
        ], 'prompt', [feat, boxes], [score], [weight]),
        osp.join(folder, 'prompt_decoder.onnx'))
    return np.array([1.0, -2.0, 0.5, 0.25], np.float32)[:, None]


@pytest.fixture(scope='module')
def toy_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('toy_export')
    write_toy_graphs(str(folder))
    return str(folder)


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_backend_runs_graphs_by_name(toy_dir, name):
    backend = build_backend(name, toy_dir, num_threads=1)
    rng = np.random.default_rng(0)
    w = np.array([1.0, -2.0, 0.5, 0.25], np.float32)[:, None]
    for h, width, n in [(8, 12, 1), (16, 8, 5)]:  # dynamic H, W and N
        image = rng.standard_normal((1, 3, h, width)).astype(np.float32)
        feats = backend.run('image_encoder', dict(image=image))
        assert list(feats) == ['feat']
        np.testing.assert_allclose(feats['feat'], 2 * image + 1, rtol=1e-6)
        boxes = rng.uniform(0, 10, (n, 4)).astype(np.float32)
        # Extra feeds (the decoder gets all encoder outputs) are ignored.
        out = backend.run('prompt_decoder',
                          dict(feats, boxes=boxes, unused=image))
        expected = boxes @ w + feats['feat'].mean()
        assert out['score'].shape == (n, 1)
        np.testing.assert_allclose(out['score'], expected, rtol=1e-5)


def _matmul_graph(path, size=512):
    """``y = x @ x`` on a ``[size, size]`` input: work ONNX Runtime splits
    over its threads."""
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [size, size])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [size, size])
    _save(
        helper.make_graph([helper.make_node('MatMul', ['x', 'x'], ['y'])],
                          'square', [x], [y]), path)


def test_onnxruntime_threads_stop_spinning_after_a_run(tmp_path):
    """The pool's threads spin while a run needs them and stop when it
    returns: the 50 ms after a run cost (almost) no CPU. ONNX Runtime's
    default kept a thread spinning there (15-30 ms of CPU in those 50 ms,
    measured), on the cores the caller's post-processing needs."""
    import time
    _matmul_graph(str(tmp_path / 'image_encoder.onnx'))
    backend = build_backend('onnxruntime', str(tmp_path), num_threads=2)
    options = backend.session('image_encoder').get_session_options()
    assert options.get_session_config_entry(
        'session.force_spinning_stop') == '1'
    x = np.random.default_rng(0).random((512, 512), np.float32)
    burnt = []
    for _ in range(5):
        y = backend.run('image_encoder', dict(x=x))['y']
        start = time.process_time()
        time.sleep(0.05)
        burnt.append(time.process_time() - start)
    np.testing.assert_allclose(y, x @ x, rtol=1e-4)
    # min: a moment of another thread of this process must not fail it;
    # a spinning pool burns in every round.
    assert min(burnt) < 0.004, burnt


def test_openvino_reads_inputs_in_place_and_leaves_them(toy_dir):
    """The feeds are the request's input tensors (no copy of the feature
    map per click), and the run does not change them."""
    backend = build_backend('openvino', toy_dir)
    rng = np.random.default_rng(0)
    feat = rng.standard_normal((1, 3, 8, 12)).astype(np.float32)
    boxes = rng.uniform(0, 10, (1, 4)).astype(np.float32)
    kept = feat.copy(), boxes.copy()
    backend.run('prompt_decoder', dict(feat=feat, boxes=boxes))
    _, request = backend.session('prompt_decoder').request(dict(boxes=boxes))
    assert request.get_tensor('feat').data.ctypes.data == feat.ctypes.data
    np.testing.assert_array_equal(feat, kept[0])
    np.testing.assert_array_equal(boxes, kept[1])


def test_openvino_compiles_a_one_prompt_model_first(toy_dir):
    """A graph with a free number of prompts is compiled with one prompt
    first (a click), with any number when a call first has another
    count; both give the graph's outputs, and a click after a batch goes
    back to the one-prompt model."""
    backend = build_backend('openvino', toy_dir)
    w = np.array([1.0, -2.0, 0.5, 0.25], np.float32)[:, None]
    feat = np.random.default_rng(1).standard_normal(
        (1, 3, 8, 12)).astype(np.float32)
    assert backend.compiled_for('prompt_decoder') is None
    session = backend.session('prompt_decoder')
    assert backend.compiled_for('prompt_decoder') == ['one']
    one, _ = session.request(dict(boxes=np.zeros((1, 4), np.float32)))
    assert list(one.input('boxes').get_partial_shape().to_shape()) == [1, 4]
    for n, compiled in [(1, ['one']), (5, ['free', 'one']),
                        (1, ['free', 'one']), (2, ['free', 'one'])]:
        boxes = np.arange(4 * n, dtype=np.float32).reshape(n, 4)
        out = backend.run('prompt_decoder', dict(feat=feat, boxes=boxes))
        assert backend.compiled_for('prompt_decoder') == compiled
        np.testing.assert_allclose(
            out['score'], boxes @ w + feat.mean(), rtol=1e-5)
    used, _ = session.request(dict(boxes=np.zeros((1, 4), np.float32)))
    assert used is one
    # A graph without prompts is compiled once, as it is.
    backend.run('image_encoder', dict(image=feat))
    assert backend.compiled_for('image_encoder') == ['free']


def test_openvino_outputs_are_not_overwritten_by_the_next_run(toy_dir):
    backend = build_backend('openvino', toy_dir)
    first = backend.run('image_encoder',
                        dict(image=np.zeros((1, 3, 4, 4), np.float32)))
    backend.run('image_encoder', dict(image=np.ones((1, 3, 4, 4), np.float32)))
    assert (first['feat'] == 1).all()


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_outputs_keep_the_graphs_names(tmp_path, name):
    """A graph output that copies an inner tensor (as the exporter writes
    ``cls_logits = Identity(/head/.../Mul_output_0)``) is handed out under
    the graph's name: OpenVINO's compiled model knows both names."""
    image = helper.make_tensor_value_info('image', TensorProto.FLOAT,
                                          [1, 3, 'H', 'W'])
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 'H', 'W'])
        for n in ('feat', 'copy')
    ]
    two = helper.make_tensor('two', TensorProto.FLOAT, [], [2.0])
    _save(
        helper.make_graph([
            helper.make_node('Mul', ['image', 'two'], ['/inner/Mul_0']),
            helper.make_node('Identity', ['/inner/Mul_0'], ['copy']),
            helper.make_node('Neg', ['/inner/Mul_0'], ['feat']),
        ], 'encoder', [image], outputs, [two]),
        str(tmp_path / 'image_encoder.onnx'))
    backend = build_backend(name, str(tmp_path))
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    out = backend.run('image_encoder', dict(image=x))
    assert sorted(out) == ['copy', 'feat']
    np.testing.assert_array_equal(out['copy'], 2 * x)
    np.testing.assert_array_equal(out['feat'], -2 * x)


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_fp32_is_not_computed_in_bf16(toy_dir, name):
    """OpenVINO computes in bf16 by default where the CPU has it; fp32
    must not: 1 + 2^-10 is lost in bf16 (8 bits of mantissa)."""
    backend = build_backend(name, toy_dir)
    image = np.full((1, 3, 4, 4), 2.0**-11, np.float32)
    feat = backend.run('image_encoder', dict(image=image))['feat']
    assert (feat == np.float32(1 + 2.0**-10)).all()


def test_what_each_runtime_precision_reads_and_computes_in():
    assert set(FOLDER_PRECISIONS) == set(PRECISIONS)
    assert [p for p in PRECISIONS
            if reads_int8_folder(p)] == ['int8', 'int8-bf16']
    assert [p for p in PRECISIONS if runs_bf16(p)] == ['bf16', 'int8-bf16']
    assert not reads_int8_folder('fp16') and not runs_bf16('fp16')


def test_missing_graph_names_the_file(tmp_path):
    folder = tmp_path / 'export'
    folder.mkdir()
    backend = build_backend('onnxruntime', str(folder))
    with pytest.raises(
            BackendError, match='Graph file not found: .*image_encoder.onnx'):
        backend.run('image_encoder', {})
    with pytest.raises(BackendError, match="No graph named 'nope'"):
        backend.run('nope', {})


def test_missing_feed_names_the_input(toy_dir):
    backend = build_backend('onnxruntime', toy_dir)
    with pytest.raises(
            BackendError, match='prompt_decoder.onnx needs the inputs boxes'):
        backend.run('prompt_decoder',
                    dict(feat=np.zeros((1, 3, 2, 2), np.float32)))


@pytest.mark.parametrize('args, message', [
    (('tensorrt', ), "Unknown backend 'tensorrt': use one of onnxruntime, "
     'openvino'),
    (('onnxruntime', 'fp16'), r"precision must be one of \('fp32', 'bf16', "
     r"'int8', 'int8-bf16'\), got 'fp16'"),
    (('onnxruntime', 'bf16'), 'The onnxruntime backend does not run bf16 .*'
     'bf16 runs on: openvino'),
])
def test_bad_backend_or_precision(toy_dir, args, message):
    name, precision = (args + ('fp32', ))[:2]
    with pytest.raises(UserError, match=message):
        build_backend(name, toy_dir, precision=precision)


def test_bad_threads_and_folder(toy_dir, tmp_path):
    with pytest.raises(BackendError, match='num_threads must be'):
        build_backend('openvino', toy_dir, num_threads=0)
    with pytest.raises(BackendError, match='Export folder not found'):
        build_backend('openvino', str(tmp_path / 'none'))


@pytest.mark.parametrize('name, package', [('onnxruntime', 'onnxruntime'),
                                           ('openvino', 'openvino')])
def test_missing_runtime_names_the_package(toy_dir, name, package):
    """A subprocess in which the runtime cannot be imported: a one-line
    user error naming the pip package."""
    code = (f'import sys; sys.modules[{package!r}] = None\n'
            'from rap_sam.deploy.backends import build_backend\n'
            'from rap_sam.utils.user_errors import cli_errors\n'
            f'with cli_errors(): build_backend({name!r}, {toy_dir!r})\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.startswith(f'error: The {name} backend needs the '
                                  f'{package} package')
    assert f'pip install {package}' in proc.stderr


@pytest.mark.parametrize('ori, scale', [((427, 640), (96, 64)),
                                        ((100, 150), (96, 64)),
                                        ((64, 200), (128, 128)),
                                        ((333, 517), (160, 96))])
def test_preprocessing_equals_mmdet(ori, scale):
    """Resize(keep_ratio) + RapSAMDataPreprocessor in torch give the same
    float32 tensor and metainfo as the numpy / OpenCV version."""
    from mmcv.transforms import Compose
    from mmdet.datasets.transforms import PackDetInputs, Resize
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'rap_sam', 'eval_rap_sam_coco.py'))
    pre_cfg = cfg.model.data_preprocessor
    img = cv2.resize(cv2.imread(osp.join(REPO, 'demo', 'demo.jpg')), ori[::-1])
    pipeline = Compose([
        dict(type='mmdet.LoadImageFromNDArray'),
        Resize(scale=scale, keep_ratio=True),
        PackDetInputs(
            meta_keys=('img_id', 'img_shape', 'ori_shape', 'scale_factor'))
    ])
    data = pipeline(dict(img=img, img_id=0))
    torch_pre = MODELS.build(pre_cfg)
    out = torch_pre(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    mine, meta = ImagePreprocessor(scale, pre_cfg.mean, pre_cfg.std,
                                   pre_cfg.bgr_to_rgb,
                                   pre_cfg.pad_size_divisor)(
                                       img)
    expected = out['inputs'].numpy()
    assert mine.dtype == np.float32 and mine.shape == expected.shape
    assert np.array_equal(mine, expected)
    ref_meta = out['data_samples'][0].metainfo
    for key in ('ori_shape', 'img_shape', 'scale_factor', 'batch_input_shape',
                'pad_shape'):
        assert tuple(meta[key]) == tuple(ref_meta[key]), key


def test_fixed_pad_shape():
    pre = ImagePreprocessor((96, 64), [0, 0, 0], [1, 1, 1],
                            False,
                            pad_shape=(64, 128))
    img = np.full((50, 50, 3), 7, np.uint8)
    batch, meta = pre(img)
    assert batch.shape == (1, 3, 64, 128)
    assert meta['img_shape'] == (64, 64)
    assert (batch[..., :64, :64] == 7).all() and (batch[..., 64:] == 0).all()
    # A portrait photo in a landscape shape (it was refused): resized to
    # fit the input, its aspect ratio kept, scale factors to match.
    portrait = np.full((120, 60, 3), 5, np.uint8)
    batch, meta = ImagePreprocessor((96, 64), [0] * 3, [1] * 3,
                                    pad_shape=(64, 96))(
                                        portrait)
    assert batch.shape == (1, 3, 64, 96)
    assert meta['img_shape'] == (64, 32)
    assert meta['scale_factor'] == (32 / 60, 64 / 120)
    assert (batch[..., :64, :32] == 5).all() and (batch[..., 32:] == 0).all()


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_unreadable_graph_names_the_file(tmp_path, name):
    (tmp_path / 'image_encoder.onnx').write_bytes(b'not a graph')
    backend = build_backend(name, str(tmp_path))
    with pytest.raises(
            BackendError, match=f'{name} cannot load .*image_encoder.onnx: '):
        backend.run('image_encoder', {})


def _openvino_computes_bf16() -> bool:
    import openvino as ov

    from rap_sam.deploy.backends.openvino_backend import computes_bf16
    return computes_bf16(ov.Core())


# 1 + 3 * 2^-9 lies between the bf16 numbers 1 and 1 + 2^-7, nearer the
# second: rounded to nearest (as OpenVINO rounds a bf16 model's inputs) the
# map's mean is 1 + 2^-7; truncated it would be 1.
_OFF_GRID = 1 + 3 * 2.0**-9
_ROUNDED = 1 + 2.0**-7


@pytest.mark.skipif(
    not _openvino_computes_bf16(),
    reason="this CPU has no bf16 kernels in OpenVINO's CPU plugin")
def test_openvino_bf16_clicks_read_each_images_map_converted_once(toy_dir):
    """In bf16 the prompt decoder is fed the map converted once per image
    (not at every click), rounded as OpenVINO rounds it; the map handed
    out is read-only, so no change in place can make the copy stale."""
    backend = build_backend('openvino', toy_dir, precision='bf16')
    maps = backend._bf16_maps
    converted = []
    convert = maps.convert
    maps.convert = lambda array, out=None: converted.append(1) or convert(
        array, out)
    boxes = np.zeros((1, 4), np.float32)
    for image_value, mean in [((_OFF_GRID - 1) / 2, _ROUNDED), (0.5, 2.0)]:
        image = np.full((1, 3, 4, 4), image_value, np.float32)
        feats = backend.run('image_encoder', dict(image=image))
        assert not feats['feat'].flags.writeable
        with pytest.raises(ValueError, match='read-only'):
            feats['feat'][0, 0, 0, 0] = 0
        np.testing.assert_array_equal(feats['feat'], 2 * image + 1)
        converted.clear()
        for _ in range(3):
            out = backend.run('prompt_decoder', dict(feats, boxes=boxes))
            assert out['score'].tolist() == [[mean]]
        assert len(converted) == 1
    # Any other array is converted at each call: a change shows.
    feat = np.full((1, 3, 4, 4), _OFF_GRID, np.float32)
    converted.clear()
    for value, mean in [(_OFF_GRID, _ROUNDED), (3.0, 3.0)]:
        feat[...] = value
        out = backend.run('prompt_decoder', dict(feat=feat, boxes=boxes))
        assert out['score'].tolist() == [[mean]]
    assert len(converted) == 2


def test_openvino_bf16_maps_are_read_in_place_by_float_graphs(tmp_path):
    """A graph fed the handed-out read-only map reads the array under it
    in place: OpenVINO copies a read-only input first."""
    write_toy_graphs(str(tmp_path))
    feat = helper.make_tensor_value_info('feat', TensorProto.FLOAT,
                                         [1, 3, 'H', 'W'])
    total = helper.make_tensor_value_info('total', TensorProto.FLOAT, [])
    _save(
        helper.make_graph(
            [helper.make_node('ReduceSum', ['feat'], ['total'], keepdims=0)],
            'panoptic', [feat], [total]),
        str(tmp_path / 'panoptic_decoder.onnx'))
    backend = build_backend('openvino', str(tmp_path), precision='bf16')
    image = np.ones((1, 3, 4, 4), np.float32)
    feats = backend.run('image_encoder', dict(image=image))
    out = backend.run('panoptic_decoder', feats)
    assert out['total'] == 3 * 4 * 4 * 3.0
    request = backend.session('panoptic_decoder').request({})[1]
    assert request.get_tensor('feat').data.ctypes.data == \
        feats['feat'].ctypes.data


def test_openvino_bf16_maps_stay_fp32_on_a_cpu_without_bf16(
        toy_dir, monkeypatch):
    """Where OpenVINO computes a bf16 hint in fp32 it says so, and the map
    is not rounded to bf16 either: the decoder reads the fp32 map."""
    from rap_sam.deploy.backends import openvino_backend
    monkeypatch.setattr(openvino_backend, 'computes_bf16', lambda core: False)
    with pytest.warns(UserNotice) as notices:
        backend = build_backend('openvino', toy_dir, precision='bf16')
    assert [str(n.message) for n in notices] == [
        "precision 'bf16': this CPU has neither AVX-512 BF16 nor AMX, so "
        'OpenVINO computes in fp32; use fp32 (or int8 from an int8 export) '
        'here.'
    ]
    image = np.full((1, 3, 4, 4), (_OFF_GRID - 1) / 2, np.float32)
    feats = backend.run('image_encoder', dict(image=image))
    assert feats['feat'].flags.writeable
    assert backend.session('prompt_decoder').bf16_inputs == []
    assert backend._bf16_maps is None
