"""RapSAMPredictor on ONNX Runtime and OpenVINO against the torch model, on
a real photo (demo.jpg) with seeded weights: fp32 logits within 1e-3
relative, the same instances, labels and prompt masks, the panoptic map
equal except at float ties; the export cache; bad export folders."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from helpers import REPO, config_path

from rap_sam.apis import InputError, RapSAMPredictor
from rap_sam.deploy.backends import BACKENDS, DeployedModel
from rap_sam.utils.user_errors import UserError

COCO = config_path('rap_sam/eval_rap_sam_coco.py')

POINTS = [[30, 40], [100, 60], [149, 99]]
BOXES = [[10, 10, 90, 80], [0, 0, 150, 100]]


@pytest.fixture(scope='module')
def export_dir(weights, tmp_path_factory):
    """The constructor's path: export into the cache (an empty one here),
    load the graphs; the cache folder is then an export folder."""
    cache = tmp_path_factory.mktemp('export_cache')
    old = os.environ.get('RAP_SAM_EXPORT_CACHE')
    os.environ['RAP_SAM_EXPORT_CACHE'] = str(cache)
    try:
        predictor = RapSAMPredictor(
            COCO, weights, scale=(96, 64), backend='onnxruntime')
    finally:
        if old is None:
            os.environ.pop('RAP_SAM_EXPORT_CACHE')
        else:
            os.environ['RAP_SAM_EXPORT_CACHE'] = old
    folders = os.listdir(cache)
    assert len(folders) == 1
    assert predictor.runtime.export_dir == str(cache / folders[0])
    return predictor.runtime.export_dir


@pytest.fixture(scope='module', params=sorted(BACKENDS))
def runtime_predictor(request, export_dir, predictor):
    runtime = RapSAMPredictor.from_export(export_dir, backend=request.param)
    # The torch fixture lowers the threshold so the photo has segments.
    runtime.model.panoptic_fusion_head.test_cfg.update(
        predictor.model.panoptic_fusion_head.test_cfg)
    return runtime


def assert_close(actual, expected, rel=1e-3):
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape
    scale = expected.abs().max()
    err = (actual - expected).abs().max()
    assert err <= rel * scale, f'max error {err:.3g}, scale {scale:.3g}'


def torch_logits(predictor, img, boxes=None):
    """The torch head's raw outputs for ``img`` (and prompt boxes at the
    resized scale)."""
    from mmengine.structures import InstanceData
    model = predictor.model
    with torch.no_grad():
        data = model.data_preprocessor(predictor._batch(img), False)
        sample = data['data_samples'][0]
        if boxes is not None:
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes,
                pb_labels=torch.ones(len(boxes), dtype=torch.long))
        cls, masks, ious, _ = model.panoptic_head.predict(
            model.extract_feat(data['inputs']), [sample])
    return cls, masks, ious


def test_fp32_logits_match_torch(predictor, runtime_predictor, photo):
    runtime = runtime_predictor.runtime
    image, _ = runtime.preprocess(photo)
    features = runtime.encode(image)
    cls, masks = runtime.decode_panoptic(features)
    ref_cls, ref_masks, _ = torch_logits(predictor, photo)
    assert_close(cls, ref_cls)
    assert_close(masks, ref_masks)

    predictor.set_image(photo)
    boxes = predictor.prompt_boxes(POINTS, BOXES)
    cls, masks, iou = runtime.decode_prompts(features, boxes.numpy(),
                                             predictor._image['metainfo'])
    ref_cls, ref_masks, ref_iou = torch_logits(predictor, photo, boxes)
    assert_close(cls, ref_cls)
    assert_close(masks, ref_masks)
    assert_close(iou, ref_iou)


def test_one_click_matches_torch(predictor, runtime_predictor, photo):
    """A click (one prompt: OpenVINO's one-prompt model, see
    OpenVINOBackend) gives the torch head's logits, before and after a
    batch of several prompts on the same features."""
    runtime = runtime_predictor.runtime
    image, meta = runtime.preprocess(photo)
    features = runtime.encode(image)
    predictor.set_image(photo)
    click = predictor.prompt_boxes(POINTS[1:2])
    batch = predictor.prompt_boxes(POINTS, BOXES)
    ref = torch_logits(predictor, photo, click)
    for boxes in (click, batch, click):
        got = runtime.decode_prompts(features, boxes.numpy(), meta)
        if len(boxes) == 1:
            for actual, expected in zip(got, ref):
                assert_close(actual, expected)
    if runtime_predictor.backend == 'openvino':
        assert runtime.backend.compiled_for('prompt_decoder') == [
            'free', 'one'
        ]


def test_segment_image_matches_torch(predictor, runtime_predictor, photo):
    expected = predictor.segment_image(photo)
    result = runtime_predictor.segment_image(photo)
    ref_pan = expected.pred_panoptic_seg
    pan = result.pred_panoptic_seg
    assert ref_pan.segments, 'compare non-empty results'
    assert [(s['id'], s['label'], s['area']) for s in pan.segments] == \
        [(s['id'], s['label'], s['area']) for s in ref_pan.segments]
    # A pixel can change owner only where two queries' score-weighted
    # probabilities tie to float rounding (1e-6 here): none on this photo.
    differing = (pan.sem_seg != ref_pan.sem_seg).sum().item()
    assert differing <= 1e-3 * pan.sem_seg.numel()
    ref, ins = expected.pred_instances, result.pred_instances
    assert torch.equal(ins.labels, ref.labels)
    assert_close(ins.scores, ref.scores)
    # A mask pixel flips only where its logit is within rounding of 0.
    assert (ins.masks != ref.masks).sum().item() <= 1e-3 * ref.masks.numel()


def test_portrait_photo_matches_torch(predictor, runtime_predictor, photo):
    """The predictor's own export has free height and width: a portrait
    photo is padded as the torch model pads it, and gives its results."""
    portrait = np.ascontiguousarray(np.rot90(photo))
    expected = predictor.segment_image(portrait).pred_panoptic_seg
    result = runtime_predictor.segment_image(portrait).pred_panoptic_seg
    assert result.sem_seg.shape == expected.sem_seg.shape == (1, 150, 100)
    assert expected.segments, 'compare non-empty results'
    assert [(s['label'], s['area']) for s in result.segments] == \
        [(s['label'], s['area']) for s in expected.segments]


def test_prompts_match_torch(predictor, runtime_predictor, photo):
    predictor.set_image(photo)
    expected = predictor.predict_prompts(POINTS, BOXES).pred_instances
    runtime_predictor.set_image(photo)
    # Prompt boxes at the resized scale: the same numbers, bit for bit.
    assert torch.equal(
        runtime_predictor.prompt_boxes(POINTS, BOXES),
        predictor.prompt_boxes(POINTS, BOXES).float())
    result = runtime_predictor.predict_prompts(
        POINTS, BOXES, batch_size=2).pred_instances
    assert result.masks.shape == (5, 100, 150)
    assert torch.equal(result.masks, expected.masks)
    assert torch.equal(result.labels, expected.labels)
    assert_close(result.iou_scores, expected.iou_scores)
    assert_close(result.scores, expected.scores)


def test_runtime_predictor_meta(predictor, runtime_predictor):
    assert runtime_predictor.class_names == predictor.class_names
    assert runtime_predictor.scale == (96, 64)
    assert runtime_predictor.precision == 'fp32'
    assert runtime_predictor.device == torch.device('cpu')


def test_video_is_refused_naming_the_torch_backend(runtime_predictor):
    with pytest.raises(InputError, match='Videos run on the torch backend'):
        runtime_predictor.iter_video(np.zeros((2, 64, 64, 3), np.uint8))


def test_the_cache_is_reused(weights, export_dir, monkeypatch):
    """A second predictor of the same weights, config and scale loads the
    cached export: nothing is exported (export_model is not called)."""
    import rap_sam.deploy.export as export
    monkeypatch.setenv('RAP_SAM_EXPORT_CACHE', os.path.dirname(export_dir))

    def fail(*args, **kwargs):
        raise AssertionError('exported again')

    monkeypatch.setattr(export, 'export_model', fail)
    predictor = RapSAMPredictor(
        COCO, weights, scale=(96, 64), backend='openvino')
    assert predictor.runtime.export_dir == export_dir
    with pytest.raises(AssertionError, match='exported again'):
        RapSAMPredictor(COCO, weights, scale=(128, 64), backend='openvino')


@pytest.mark.parametrize('damage', ['graph cut short', 'no deploy.json'])
def test_a_damaged_cache_entry_is_made_anew(weights, export_dir, tmp_path,
                                            monkeypatch, damage):
    """Its message advised re-exporting with tools/deploy/export.py, which
    does not mend a cache."""
    cache = tmp_path / 'cache'
    entry = cache / os.path.basename(export_dir)
    shutil.copytree(export_dir, entry)
    if damage == 'no deploy.json':
        os.remove(entry / 'deploy.json')
    else:
        graph = entry / 'prompt_decoder.onnx'
        graph.write_bytes(graph.read_bytes()[:1000])
    monkeypatch.setenv('RAP_SAM_EXPORT_CACHE', str(cache))
    predictor = RapSAMPredictor(
        COCO, weights, scale=(96, 64), backend='onnxruntime')
    assert predictor.runtime.export_dir == str(entry)
    assert os.listdir(cache) == [entry.name]
    for name in os.listdir(export_dir):
        assert (entry / name).stat().st_size == \
            os.stat(os.path.join(export_dir, name)).st_size, name


@pytest.fixture
def broken_copy(export_dir, tmp_path):
    folder = tmp_path / 'export'
    shutil.copytree(export_dir, folder)
    return folder


def test_missing_graph_is_named(broken_copy):
    (broken_copy / 'prompt_decoder.onnx').unlink()
    with pytest.raises(UserError, match='prompt_decoder.onnx not found'):
        RapSAMPredictor.from_export(str(broken_copy))


def test_graph_of_the_wrong_shape_is_named(broken_copy):
    """A graph from another export (a fixed input size) in the folder."""
    path = broken_copy / 'image_encoder.onnx'
    model = onnx.load(str(path), load_external_data=False)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 128
    onnx.save(model, str(path))
    with pytest.raises(
            UserError,
            match=r'image_encoder.onnx: input "image" has shape \[1, 3, 128, '
            r"'W'\], deploy.json says \[1, 3, 'H', 'W'\]"):
        RapSAMPredictor.from_export(str(broken_copy), backend='openvino')


def test_precision_the_folder_does_not_have(export_dir):
    with pytest.raises(
            UserError,
            match=r'is exported in fp32 \(its deploy.json\); int8 needs a '
            r'folder exported in int8 \(make one with'):
        RapSAMPredictor.from_export(export_dir, precision='int8')


def test_a_precision_names_only_runtimes_that_run_exports(export_dir):
    # torch runs bf16 too, but not an export folder.
    with pytest.raises(
            InputError,
            match=r'^The onnxruntime backend runs fp32, int8, not bf16; bf16 '
            r'runs on openvino\.$'):
        RapSAMPredictor.from_export(export_dir, precision='bf16')


def test_bf16_on_openvino_stays_close(export_dir, photo):
    """bf16 is OpenVINO's inference precision on an fp32 folder
    (approximate, so compared loosely: the same panoptic map on most
    pixels where the CPU has bf16, exactly fp32's where it has not)."""
    fp32 = DeployedModel(export_dir, 'openvino')
    bf16 = DeployedModel(export_dir, 'openvino', precision='bf16')
    assert bf16.precision == 'bf16'
    image, _ = fp32.preprocess(photo)
    cls32, masks32 = fp32.decode_panoptic(fp32.encode(image))
    cls16, masks16 = bf16.decode_panoptic(bf16.encode(image))
    assert_close(cls16, cls32, rel=0.1)
    assert_close(masks16, masks32, rel=0.1)


def test_bf16_prompts_on_openvino_repeat_and_stay_close(export_dir, photo):
    """Clicks and boxes on one image in bf16 (the prompt decoder reads the
    map converted once per image): the same answer at every call, close
    to fp32's, and a new image's answer after set_image."""
    fp32 = RapSAMPredictor.from_export(export_dir, backend='openvino')
    bf16 = RapSAMPredictor.from_export(
        export_dir, backend='openvino', precision='bf16')
    for img in (photo, np.ascontiguousarray(photo[::-1])):
        fp32.set_image(img)
        bf16.set_image(img)
        expected = fp32.predict_prompts(POINTS, BOXES).pred_instances
        first = bf16.predict_prompts(POINTS, BOXES).pred_instances
        again = bf16.predict_prompts(POINTS, BOXES).pred_instances
        assert torch.equal(first.masks, again.masks)
        assert torch.equal(first.scores, again.scores)
        agree = (first.masks == expected.masks).float().mean()
        assert agree > 0.95, float(agree)


def test_encoder_and_prompts_run_without_torch(export_dir, photo, tmp_path):
    """A deployment without PyTorch: import torch fails in the subprocess,
    which still preprocesses, encodes and decodes prompts; its logits are
    this process's."""
    np.save(tmp_path / 'photo.npy', photo)
    code = f'''
import sys
sys.modules['torch'] = None
import numpy as np
from rap_sam.deploy.backends import DeployedModel
model = DeployedModel({export_dir!r}, 'onnxruntime')
image, meta = model.preprocess(np.load({str(tmp_path / 'photo.npy')!r}))
boxes = model.prompt_boxes(np.array([[30., 40.]]), np.zeros((0, 4)), meta)
cls, masks, iou = model.decode_prompts(model.encode(image), boxes, meta)
np.save({str(tmp_path / 'iou.npy')!r}, iou)
assert 'torch' not in [m.split('.')[0] for m in sys.modules
                       if sys.modules[m] is not None]
'''
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = DeployedModel(export_dir, 'onnxruntime')
    image, meta = model.preprocess(photo)
    boxes = model.prompt_boxes(np.array([[30., 40.]]), np.zeros((0, 4)), meta)
    _, _, iou = model.decode_prompts(model.encode(image), boxes, meta)
    np.testing.assert_array_equal(np.load(tmp_path / 'iou.npy'), iou)


def test_deploy_json_is_what_the_runtime_reads(export_dir):
    with open(os.path.join(export_dir, 'deploy.json')) as f:
        spec = json.load(f)
    assert spec['preprocess']['scale'] == [96, 64]
    assert spec['precision'] == 'fp32'


@pytest.mark.parametrize('backend', sorted(BACKENDS))
def test_half_post_processing_on_a_runtime(export_dir, photo, backend):
    """post='half' reaches a runtime's post-processing (the same head as
    torch's); the results keep their shapes."""
    from rap_sam.models.seg_heads.half_resolution_fusion_head import \
        HalfResolutionFusionHead
    runtime = RapSAMPredictor.from_export(
        export_dir, backend=backend, post='half')
    assert runtime.post == 'half'
    assert isinstance(runtime.model.panoptic_fusion_head,
                      HalfResolutionFusionHead)
    exact = RapSAMPredictor.from_export(export_dir, backend=backend)
    assert not isinstance(exact.model.panoptic_fusion_head,
                          HalfResolutionFusionHead)
    result, expected = runtime.segment_image(photo), exact.segment_image(photo)
    assert result.pred_panoptic_seg.sem_seg.shape == (1, 100, 150)
    assert result.pred_instances.masks.shape == \
        expected.pred_instances.masks.shape
    assert torch.equal(result.pred_instances.labels,
                       expected.pred_instances.labels)
