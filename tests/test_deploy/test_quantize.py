"""int8 and bf16 exports made from an fp32 one (rap_sam.deploy.quantize):
a valid QDQ graph that both runtimes run close to fp32, the fp32 folder
untouched, and the messages for a bad calibration folder."""
import hashlib
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import onnx
import pytest
from helpers import REPO, load_config, toy_checkpoint

from rap_sam.deploy.backends import DeployedModel
from rap_sam.deploy.calibration import CalibrationError, calibration_images
from rap_sam.deploy.quantize import (INT8_MODULES, QuantizeError,
                                     quantize_export)
from rap_sam.utils.user_errors import UserError

SCALE = (96, 64)  # (w, h): small, and not square
TOY = 'rap_sam/toy_eval_coco.py'


def _photos():
    """Real photos (BGR): demo/demo.jpg and scikit-image's."""
    import skimage.data
    photos = [cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))]
    for name in ('astronaut', 'coffee', 'chelsea', 'rocket'):
        photos.append(
            cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))
    return photos


@pytest.fixture(scope='module')
def toy_model(tmp_path_factory):
    """The toy architecture with seeded random weights and toy class
    embeddings, and its config (the export records its name)."""
    root = tmp_path_factory.mktemp('toy')
    model = toy_checkpoint(str(root), TOY)
    return model, load_config(TOY)


@pytest.fixture(scope='module')
def fp32_dir(toy_model, tmp_path_factory):
    from rap_sam.deploy.export import export_model
    model, cfg = toy_model
    out = str(tmp_path_factory.mktemp('export') / 'fp32')
    export_model(model, out, cfg=cfg, scale=SCALE)
    return out


@pytest.fixture(scope='module')
def calib_dir(tmp_path_factory):
    """Four of the photos; the fifth (rocket) is kept out for testing."""
    folder = tmp_path_factory.mktemp('calib')
    for i, img in enumerate(_photos()[:4]):
        cv2.imwrite(str(folder / f'{i}.jpg'), img)
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


def _digest(folder):
    return {
        name: hashlib.sha256(open(osp.join(folder, name),
                                  'rb').read()).hexdigest()
        for name in sorted(os.listdir(folder))
    }


@pytest.fixture(scope='module')
def int8_dirs(fp32_dir, calib_dir, tmp_path_factory):
    """An int8 export per calibration (min / max, percentile)."""
    before = _digest(fp32_dir)
    dirs = {
        calibration:
        quantize_export(
            fp32_dir,
            'int8',
            calib_dir,
            out_dir=str(tmp_path_factory.mktemp('q') / calibration),
            calibration=calibration)
        for calibration in ('minmax', 'percentile')
    }
    assert _digest(fp32_dir) == before  # the fp32 export is untouched
    return dirs


@pytest.fixture(scope='module')
def int8_dir(int8_dirs):
    return int8_dirs['minmax']


def test_int8_graph_is_qdq_standard_onnx(fp32_dir, int8_dir):
    from rap_sam.deploy.deploy_spec import read_deploy_spec
    spec = read_deploy_spec(int8_dir)
    assert spec.precision == 'int8'
    graph = onnx.load(osp.join(int8_dir, 'image_encoder.onnx'))
    onnx.checker.check_model(graph, full_check=True)
    nodes = graph.graph.node
    assert {node.domain for node in nodes} <= {'', 'ai.onnx'}
    producer = {out: node for node in nodes for out in node.output}
    inits = {init.name: init for init in graph.graph.initializer}
    products = [
        n for n in nodes if n.op_type in ('Conv', 'ConvTranspose', 'MatMul')
    ]
    assert len(products) > 10
    for node in products:
        # Both operands come out of a DequantizeLinear: the activation from
        # a QuantizeLinear, the weight from an int8 constant, one scale per
        # output channel.
        data, weight = (producer[name] for name in node.input[:2])
        assert data.op_type == weight.op_type == 'DequantizeLinear'
        assert producer[data.input[0]].op_type == 'QuantizeLinear'
        assert inits[weight.input[0]].data_type == onnx.TensorProto.INT8
        # uint8 activations (U8S8): ONNX Runtime's x86 int8 kernels.
        assert inits[data.input[2]].data_type == onnx.TensorProto.UINT8
        if node.op_type == 'Conv':
            assert inits[weight.input[1]].dims[0] == \
                inits[weight.input[0]].dims[0] > 1
        if node.op_type == 'ConvTranspose':
            # OpenVINO runs it in int8 only without an activation zero
            # point (else in fp32): uint8 from 0, the ReLU's range.
            assert onnx.numpy_helper.to_array(inits[data.input[2]]) == 0
    assert {n.op_type for n in products} == {'Conv', 'ConvTranspose', 'MatMul'}
    # A deformable conv's GEMM is int8, its sampling (the gathers of the
    # GEMM's rows and their bilinear sums) fp32: no QuantizeLinear after
    # them, no DequantizeLinear before them.
    consumers = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    scopes = tuple(
        n.name.rsplit('/', 1)[0] + '/' for n in products
        if n.op_type == 'MatMul')
    sampling = [
        n for n in nodes
        if n.name.startswith(scopes) and n.op_type in ('Gather', 'Mul', 'Add',
                                                       'ReduceSum')
    ]
    assert len(sampling) > 10
    for node in sampling:
        assert 'QuantizeLinear' not in consumers.get(node.output[0], [])
        assert all(producer[i].op_type != 'DequantizeLinear'
                   for i in node.input if i in producer)
    # The decoders are the fp32 ones, byte for byte.
    digest = _digest(int8_dir)
    fp32 = _digest(fp32_dir)
    assert digest['panoptic_decoder.onnx'] == fp32['panoptic_decoder.onnx']
    assert digest['prompt_decoder.onnx'] == fp32['prompt_decoder.onnx']
    assert digest['image_encoder.onnx'] != fp32['image_encoder.onnx']


def test_int8_backbone_only(fp32_dir, calib_dir, tmp_path):
    out = quantize_export(
        fp32_dir,
        'int8',
        calib_dir,
        out_dir=str(tmp_path / 'int8'),
        modules=['backbone'])
    graph = onnx.load(osp.join(out, 'image_encoder.onnx')).graph
    producer = {out: node for node in graph.node for out in node.output}
    quantized = {
        node.name.split('/')[1]
        for node in graph.node
        if node.op_type == 'Conv' and node.input[1] in producer
    }
    kept = {
        node.name.split('/')[1]
        for node in graph.node
        if node.op_type == 'Conv' and node.input[1] not in producer
    }
    assert quantized == {'backbone'}
    assert kept and 'backbone' not in kept  # the neck's convs stay fp32
    # A module of the model whose layers are in another graph.
    with pytest.raises(QuantizeError, match='no layer of panoptic_head'):
        quantize_export(
            fp32_dir,
            'int8',
            calib_dir,
            out_dir=str(tmp_path / 'x'),
            modules=['panoptic_head'])
    assert not osp.exists(tmp_path / 'x')


def test_int8_modules_are_the_models_modules_with_weights(toy_model):
    model, _ = toy_model
    with_weights = [
        name for name, child in model.named_children()
        if next(child.parameters(), None) is not None
    ]
    assert tuple(with_weights) == INT8_MODULES


@pytest.mark.parametrize('modules, named', [
    (['bakcbone'], "'bakcbone'"),
    (['backbone', 'head', 'nek'], "'head', 'nek'"),
    ([], 'no module'),
])
def test_unknown_int8_modules_are_refused_before_any_work(
        fp32_dir, tmp_path, monkeypatch, modules, named):
    """Said before the calibration images are read (each costs an fp32
    run of the graphs), with the names to choose from."""
    import rap_sam.deploy.calibration as calibration

    def no_calibration(*args, **kwargs):
        raise AssertionError('calibration images were read')

    monkeypatch.setattr(calibration, 'calibration_images', no_calibration)
    with pytest.raises(QuantizeError) as err:
        quantize_export(
            fp32_dir,
            'int8',
            str(tmp_path / 'no_calib'),
            out_dir=str(tmp_path / 'x'),
            modules=modules)
    assert named in str(err.value)
    assert str(
        err.value).endswith('choose from backbone, neck, panoptic_head.')
    assert not osp.exists(tmp_path / 'x')


def _relative_error(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize('calibration', ['minmax', 'percentile'])
@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_int8_close_to_fp32(fp32_dir, int8_dirs, backend, calibration):
    """On a photo not in the calibration set, the int8 encoder's features
    are within 10 % (relative L2) of fp32's and correlate at >= 0.99, and
    the decoders' mask logits fed with them keep their sign on >= 95 % of
    pixels. Quantization with ranges that do not fit the data (see
    test_bad_ranges_fail_the_bound) gives errors of order 1."""
    photo = _photos()[4]
    ref = DeployedModel(fp32_dir, backend, 'fp32')
    test = DeployedModel(int8_dirs[calibration], backend, 'int8')
    image, meta = ref.preprocess(photo)
    ref_feats = ref.encode(image)
    test_feats = test.encode(image)
    assert list(test_feats) == list(ref_feats)
    for name, value in ref_feats.items():
        got = test_feats[name]
        assert got.shape == value.shape
        assert _relative_error(got, value) < 0.1
        assert np.corrcoef(got.ravel(), value.ravel())[0, 1] > 0.99
    _, ref_masks = ref.decode_panoptic(ref_feats)
    _, test_masks = test.decode_panoptic(test_feats)
    assert ((ref_masks > 0) == (test_masks > 0)).mean() > 0.95


def _inference_precision(model, graph):
    """The precision OpenVINO compiled ``graph`` of a DeployedModel in."""
    session = model.backend._sessions[graph]
    compiled, _ = next(iter(session._compiled.values()))
    return str(compiled.get_property('INFERENCE_PRECISION_HINT'))


def test_int8_bf16_runs_the_int8_folder_in_bf16_on_openvino(int8_dir):
    """int8-bf16 is a runtime choice on an int8 folder: the same graphs,
    OpenVINO's float operations in bfloat16 where the CPU has it (fp32
    where it has not), the results close to int8's."""
    import openvino
    photo = _photos()[4]
    int8 = DeployedModel(int8_dir, 'openvino', 'int8')
    mixed = DeployedModel(int8_dir, 'openvino', 'int8-bf16')
    assert mixed.precision == 'int8-bf16'
    image, _ = int8.preprocess(photo)
    feats, mixed_feats = int8.encode(image), mixed.encode(image)
    _, masks = int8.decode_panoptic(feats)
    _, mixed_masks = mixed.decode_panoptic(mixed_feats)
    has_bf16 = 'BF16' in openvino.Core().get_property(
        'CPU', 'OPTIMIZATION_CAPABILITIES')
    for graph in ('image_encoder', 'panoptic_decoder'):
        assert _inference_precision(int8, graph) == "<Type: 'float32'>"
        assert _inference_precision(mixed,
                                    graph) == ("<Type: 'bfloat16'>" if has_bf16
                                               else "<Type: 'float32'>")
    for name, value in feats.items():
        assert _relative_error(mixed_feats[name], value) < 0.05
    assert ((masks > 0) == (mixed_masks > 0)).mean() > 0.95
    if not has_bf16:
        np.testing.assert_array_equal(mixed_masks, masks)


@pytest.mark.parametrize('folder, backend, precision, message', [
    ('int8', 'onnxruntime', 'int8-bf16',
     'The onnxruntime backend does not run int8-bf16 .*int8-bf16 runs on: '
     'openvino'),
    ('fp32', 'openvino', 'int8-bf16',
     r'is exported in fp32 \(its deploy.json\); int8-bf16 needs a folder '
     r'exported in int8 \(make one with tools/deploy/export.py'),
    ('int8', 'openvino', 'bf16',
     r'is exported in int8 \(its deploy.json\); bf16 needs a folder '
     r'exported in bf16 or fp32\.$'),
])
def test_int8_bf16_needs_an_int8_folder_on_openvino(fp32_dir, int8_dir, folder,
                                                    backend, precision,
                                                    message):
    export = int8_dir if folder == 'int8' else fp32_dir
    with pytest.raises(UserError, match=message):
        DeployedModel(export, backend, precision)


def test_bad_ranges_fail_the_bound(fp32_dir, tmp_path):
    """The negative control of the bound above: calibrated on flat grey
    images (ranges far narrower than a photo's), int8 misses it."""
    flat = tmp_path / 'flat'
    flat.mkdir()
    cv2.imwrite(str(flat / 'grey.png'), np.full((64, 96, 3), 128, np.uint8))
    out = quantize_export(
        fp32_dir, 'int8', str(flat), out_dir=str(tmp_path / 'int8'))
    photo = _photos()[4]
    ref = DeployedModel(fp32_dir, 'onnxruntime', 'fp32')
    test = DeployedModel(out, 'onnxruntime', 'int8')
    image, _ = ref.preprocess(photo)
    (name, value), = ref.encode(image).items()
    assert _relative_error(test.encode(image)[name], value) > 0.1


def test_bf16_folder_runs_on_openvino_only(fp32_dir, tmp_path):
    from rap_sam.deploy.deploy_spec import read_deploy_spec
    out = quantize_export(fp32_dir, 'bf16', out_dir=str(tmp_path / 'bf16'))
    assert read_deploy_spec(out).precision == 'bf16'
    fp32 = _digest(fp32_dir)
    bf16 = _digest(out)
    assert {
        k: v
        for k, v in bf16.items() if k.endswith('.onnx')
    } == {
        k: v
        for k, v in fp32.items() if k.endswith('.onnx')
    }
    photo = _photos()[4]
    ref = DeployedModel(fp32_dir, 'openvino', 'fp32')
    test = DeployedModel(out, 'openvino')
    assert test.precision == 'bf16'
    image, _ = ref.preprocess(photo)
    (name, value), = ref.encode(image).items()
    # bfloat16 keeps 8 bits of mantissa: errors of a few 1e-3 per op.
    assert _relative_error(test.encode(image)[name], value) < 0.02
    with pytest.raises(UserError, match='bf16'):
        DeployedModel(out, 'onnxruntime').encode(image)


@pytest.mark.parametrize('case',
                         ['none', 'missing', 'file', 'empty', 'no_images'])
def test_bad_calibration_folder(fp32_dir, tmp_path, case):
    calib = {
        'none': None,
        'missing': str(tmp_path / 'nowhere'),
        'file': osp.join(REPO, 'demo', 'demo.jpg'),
        'empty': str(tmp_path),
        'no_images': str(tmp_path),
    }[case]
    if case == 'no_images':
        (tmp_path / 'readme.txt').write_text('text')
    out = tmp_path / 'int8'
    with pytest.raises(CalibrationError) as err:
        quantize_export(fp32_dir, 'int8', calib, out_dir=str(out))
    message = str(err.value)
    assert '\n' not in message
    expected = {
        'none': 'needs calibration images',
        'missing': 'Calibration folder not found',
        'file': 'must be a folder',
        'empty': 'No images in the calibration folder',
        'no_images': 'No images in the calibration folder',
    }[case]
    assert expected in message
    assert not out.exists()  # nothing written
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.quant')]


def test_output_folder_checks(fp32_dir, calib_dir, tmp_path):
    before = _digest(fp32_dir)
    for out in (fp32_dir, osp.dirname(fp32_dir), osp.join(fp32_dir, 'q')):
        with pytest.raises(QuantizeError, match='the fp32 export'):
            quantize_export(
                fp32_dir, 'int8', calib_dir, out_dir=out, overwrite=True)
    # An empty name is the working directory, which was replaced.
    with pytest.raises(QuantizeError, match='an empty name'):
        quantize_export(fp32_dir, 'bf16', out_dir='', overwrite=True)
    taken = tmp_path / 'taken'
    taken.mkdir()
    (taken / 'mine.txt').write_text('keep me')
    with pytest.raises(QuantizeError, match='not empty'):
        quantize_export(fp32_dir, 'bf16', out_dir=str(taken))
    # overwrite replaces an export folder only.
    with pytest.raises(QuantizeError, match='not an export folder'):
        quantize_export(fp32_dir, 'bf16', out_dir=str(taken), overwrite=True)
    assert (taken / 'mine.txt').read_text() == 'keep me'
    out = quantize_export(fp32_dir, 'bf16', out_dir=str(tmp_path / 'bf16'))
    with pytest.raises(QuantizeError, match='not empty'):
        quantize_export(fp32_dir, 'bf16', out_dir=out)
    assert quantize_export(
        fp32_dir, 'bf16', out_dir=out, overwrite=True) == out
    assert sorted(os.listdir(tmp_path)) == ['bf16', 'taken']  # no temp left
    # An export holding a file of the user's (its calibration folder, notes)
    # is not replaced: overwrite deleted them.
    (tmp_path / 'bf16' / 'calib').mkdir()
    (tmp_path / 'bf16' / 'notes.txt').write_text('mine')
    with pytest.raises(
            QuantizeError,
            match=r"holds files that are not the export's \(calib, "
            r'notes.txt\), which overwrite would delete'):
        quantize_export(fp32_dir, 'bf16', out_dir=out, overwrite=True)
    assert (tmp_path / 'bf16' / 'notes.txt').read_text() == 'mine'
    shutil.rmtree(tmp_path / 'bf16' / 'calib')
    os.remove(tmp_path / 'bf16' / 'notes.txt')
    # A link to an export: the export it points to is replaced, the link
    # kept (the link was replaced by a folder, a '.replaced-' link left).
    os.symlink(tmp_path / 'bf16', tmp_path / 'link')
    os.utime(tmp_path / 'bf16' / 'deploy.json', (0, 0))
    assert quantize_export(
        fp32_dir, 'bf16', out_dir=str(tmp_path / 'link'),
        overwrite=True) == str(tmp_path / 'link')
    assert os.path.islink(tmp_path / 'link')
    assert os.stat(tmp_path / 'bf16' / 'deploy.json').st_mtime > 0
    assert sorted(os.listdir(tmp_path)) == ['bf16', 'link', 'taken']
    with pytest.raises(QuantizeError, match='precision must be one of'):
        quantize_export(fp32_dir, 'fp16', out_dir=str(tmp_path / 'x'))
    with pytest.raises(QuantizeError, match='calibration must be one of'):
        quantize_export(
            fp32_dir,
            'int8',
            calib_dir,
            out_dir=str(tmp_path / 'z'),
            calibration='entropy')
    with pytest.raises(QuantizeError, match='No graph named'):
        quantize_export(
            fp32_dir,
            'int8',
            calib_dir,
            out_dir=str(tmp_path / 'y'),
            graphs=['decoder'])
    assert _digest(fp32_dir) == before


def _onnxruntime_percentile(src, dst, feeds):
    """ONNX Runtime's own percentile calibration (every activation of every
    image held at once), with quantize_graph's choices of what to quantize
    and how."""
    import tempfile

    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from rap_sam.deploy.calibration import FeedsReader
    from rap_sam.deploy.quantize import (CALIB_PERCENTILE,
                                         float_sampling_nodes,
                                         zero_point_free_inputs)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        quant_pre_process(src, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared).graph
        weights = {init.name for init in graph.initializer}
        reader = FeedsReader(
            feeds, [i.name for i in graph.input if i.name not in weights])
        quantize_static(
            prepared,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=float_sampling_nodes(graph),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options=dict(
                CalibPercentile=CALIB_PERCENTILE,
                TensorQuantOverrides=zero_point_free_inputs(graph)))


def test_percentile_is_onnxruntimes_in_bounded_memory(fp32_dir, calib_dir,
                                                      int8_dirs, tmp_path):
    """Percentile calibration one image at a time (two passes) makes ONNX
    Runtime's all-images-at-once graph byte for byte; on fewer images the
    graph differs (the comparison sees the calibration)."""
    from rap_sam.deploy.calibration import graph_feeds
    feeds = graph_feeds(fp32_dir,
                        calibration_images(calib_dir))['image_encoder']
    assert len(feeds) == 4
    src = osp.join(fp32_dir, 'image_encoder.onnx')
    ours = osp.join(int8_dirs['percentile'], 'image_encoder.onnx')
    theirs = str(tmp_path / 'onnxruntime.onnx')
    _onnxruntime_percentile(src, theirs, feeds)
    assert open(ours, 'rb').read() == open(theirs, 'rb').read()
    _onnxruntime_percentile(src, theirs, feeds[:1])
    assert open(ours, 'rb').read() != open(theirs, 'rb').read()


def test_percentile_on_a_dynamic_export(toy_model, calib_dir, tmp_path):
    """A dynamic-shape export's images differ in shape, which ONNX
    Runtime's percentile calibration cannot stack; one image at a time it
    calibrates, and the int8 encoder stays close to fp32 on a photo of yet
    another shape."""
    from rap_sam.deploy.deploy_spec import read_deploy_spec
    from rap_sam.deploy.export import export_model
    model, cfg = toy_model
    fp32 = str(tmp_path / 'fp32')
    export_model(model, fp32, cfg=cfg, scale=SCALE, dynamic=True)
    out = quantize_export(
        fp32,
        'int8',
        calib_dir,
        out_dir=str(tmp_path / 'int8'),
        calibration='percentile')
    spec = read_deploy_spec(out)
    assert spec['dynamic'] and spec.precision == 'int8'
    ref = DeployedModel(fp32, 'onnxruntime', 'fp32')
    test = DeployedModel(out, 'onnxruntime', 'int8')
    shapes = {
        ref.preprocess(cv2.imread(path))[0].shape
        for path in calibration_images(calib_dir)
    }
    assert len(shapes) > 1  # the calibration images differ in shape
    image, _ = ref.preprocess(_photos()[4][:100])  # a wide strip
    assert image.shape not in shapes
    (name, value), = ref.encode(image).items()
    got = test.encode(image)[name]
    assert got.shape == value.shape
    assert _relative_error(got, value) < 0.1


def test_calibration_images_spread_over_the_folder(tmp_path):
    for i in range(10):
        cv2.imwrite(
            str(tmp_path / f'{i:02d}.png'), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / 'sub.jpg').mkdir()  # a folder named like an image
    names = [osp.basename(p) for p in calibration_images(str(tmp_path), 4)]
    assert names == ['00.png', '03.png', '06.png', '09.png']
    assert len(calibration_images(str(tmp_path))) == 10


def _weight_levels(folder):
    """The int8 weights of the image encoder's products, by node."""
    graph = onnx.load(osp.join(folder, 'image_encoder.onnx')).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    return [
        inits[producer[node.input[1]].input[0]] for node in graph.node
        if node.op_type in ('Conv', 'ConvTranspose', 'MatMul')
    ]


def _int8_kernels_vs_float(folder, image):
    """Relative L2 distance between ONNX Runtime's int8 kernels on the
    quantized encoder and the same QDQ graph computed in float (no graph
    optimisation: each DequantizeLinear, then the float product)."""
    import onnxruntime as ort
    outs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(
            osp.join(folder, 'image_encoder.onnx'),
            options,
            providers=['CPUExecutionProvider'])
        outs.append(session.run(None, {'image': image})[0])
    return _relative_error(*outs)


def test_seven_bit_weights(fp32_dir, calib_dir, int8_dir, tmp_path):
    """weight_bits=7 (for CPUs without VNNI) keeps every int8 weight in
    [-64, 64] and says so in deploy.json; there ONNX Runtime's int8 kernels
    give what the QDQ graph means, on any x86 CPU (with 8-bit weights, on
    an AVX2-only CPU, their pairwise int16 sums saturate)."""
    from rap_sam.deploy.deploy_spec import read_deploy_spec
    out = quantize_export(
        fp32_dir,
        'int8',
        calib_dir,
        out_dir=str(tmp_path / 'w7'),
        weight_bits=7)
    assert read_deploy_spec(out)['int8_weight_bits'] == 7
    assert read_deploy_spec(int8_dir)['int8_weight_bits'] == 8
    seven, eight = _weight_levels(out), _weight_levels(int8_dir)
    assert len(seven) == len(eight) > 10
    assert max(int(np.abs(w).max()) for w in seven) == 64
    # Per output channel, the largest weight takes the top level.
    assert max(int(np.abs(w).max()) for w in eight) == 127
    image, _ = DeployedModel(fp32_dir, 'onnxruntime').preprocess(_photos()[4])
    assert _int8_kernels_vs_float(out, image) < 0.01


@pytest.mark.parametrize('bits', [6, 16, True, '7'])
def test_other_weight_bits_are_refused_first(fp32_dir, calib_dir, tmp_path,
                                             bits):
    with pytest.raises(QuantizeError, match='weight_bits must be 8, or 7'):
        quantize_export(
            fp32_dir,
            'int8',
            calib_dir,
            out_dir=str(tmp_path / 'q'),
            weight_bits=bits)
    assert not (tmp_path / 'q').exists()


@pytest.mark.parametrize('bits, vnni, said',
                         [(8, False, True), (8, True, False), (8, None, False),
                          (7, False, False)])
def test_eight_bit_weights_on_a_cpu_without_vnni_are_said(
        fp32_dir, calib_dir, int8_dir, tmp_path, monkeypatch, bits, vnni,
        said):
    import warnings

    from rap_sam.deploy.backends import deployed_model
    from rap_sam.utils.user_errors import UserNotice
    folder = int8_dir if bits == 8 else quantize_export(
        fp32_dir,
        'int8',
        calib_dir,
        out_dir=str(tmp_path / 'w7'),
        weight_bits=7)
    monkeypatch.setattr(deployed_model, 'cpu_has_vnni', lambda: vnni)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        DeployedModel(folder, 'onnxruntime')
        DeployedModel(fp32_dir, 'onnxruntime')  # fp32: never
    notices = [
        str(w.message) for w in caught if issubclass(w.category, UserNotice)
    ]
    assert notices == ([
        f'{folder} holds int8 weights of 8 bits, which saturate on this CPU '
        '(no VNNI: AVX2 only), so its results drift (PQ -1.7 to -7 on a toy '
        'model); for this CPU export with --int8-weight-bits 7 '
        '(tools/deploy/export.py; weight_bits=7 in quantize_export).'
    ] if said else [])
