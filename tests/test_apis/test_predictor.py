"""RapSAMPredictor's keywords: every one a user can get wrong is refused
with an InputError before the model is built."""
import pytest
import torch
from helpers import config_path

from rap_sam.apis import InputError, RapSAMPredictor

COCO = config_path('rap_sam/eval_rap_sam_coco.py')


def _not_rap_sam_config(tmp_path):
    path = tmp_path / 'other.py'
    path.write_text('model = dict(type="MaskFormer")\n')
    return str(path)


def _broken_config(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text('model = dict(\n')
    return str(path)


@pytest.mark.parametrize('make, kwargs, message', [
    (lambda d: str(d / 'missing.py'), {}, 'Config file not found: .*missing'),
    (lambda d: str(d), {}, 'is a folder, not a config file: give a .py'),
    (_broken_config, {}, 'Cannot read the config .*broken.py: SyntaxError'),
    (_not_rap_sam_config, {}, 'not a RAP-SAM config'),
    (lambda d: 3, {}, 'config must be a config file path'),
    (lambda d: COCO, dict(weights=None, device='cuda:99'),
     r"Device 'cuda:99' is not available .* available here: cpu"),
    (lambda d: COCO, dict(device='gpu'), "Unknown device 'gpu'"),
    (lambda d: COCO, dict(device=0), 'device must be a string'),
    (lambda d: COCO, dict(scale=(0, 0)),
     r'scale must be two whole numbers >= 1 .* got \(0, 0\)'),
    (lambda d: COCO, dict(scale=('64', '64')), 'scale must be two numbers'),
    (lambda d: COCO, dict(scale=64), 'scale must be two numbers'),
    (lambda d: COCO, dict(scale=(64.5, 64)), 'whole numbers'),
    (lambda d: COCO, dict(scale=(100000, 100000)),
     'The scale is 100000 x 100000 pixels .* above the limit'),
    (lambda d: COCO, dict(max_pixels=0), 'max_pixels must be >= 1'),
    (lambda d: COCO, dict(prompt_batch_size='64'), 'prompt_batch_size'),
    (lambda d: COCO, dict(optimize='no'), 'optimize must be True or False'),
    (lambda d: COCO, dict(weights='no/such/none.pth'),
     r'^Checkpoint file not found: no/such/none.pth \(give the path of a '
     r'\.pth file, e\.g\. the released rapsam_r50_12e\.pth, or leave '
     r'weights / --weights out for random weights\)\.$'),
    (lambda d: COCO, dict(backend='tensorrt'),
     "backend must be one of torch, onnxruntime, openvino, got 'tensorrt'"),
    (lambda d: COCO, dict(precision='fp64'),
     "precision must be one of bf16, fp16, fp32, int8, int8-bf16, got "
     "'fp64'"),
    (lambda d: COCO, dict(backend='onnxruntime', precision='bf16'),
     'The onnxruntime backend runs fp32, int8, not bf16; bf16 runs on '
     'torch, openvino'),
    (lambda d: COCO, dict(precision='int8'),
     'The torch backend runs fp32, bf16, fp16, not int8; int8 runs on '
     'onnxruntime, openvino'),
    (lambda d: COCO, dict(backend='openvino', precision='int8'),
     r'int8 needs calibration images: export with tools/deploy/export.py .*'
     r"from_export\(DIR, backend='openvino'\)"),
    (lambda d: COCO, dict(backend='openvino', precision='int8-bf16'),
     r'int8-bf16 needs calibration images: export with tools/deploy/export'
     r".*--precision int8 .*from_export\(DIR, backend='openvino', "
     r"precision='int8-bf16'\)\.$"),
    (lambda d: COCO, dict(backend='onnxruntime', device='cuda'),
     "The onnxruntime backend runs on the CPU \\(device 'cuda' given\\)"),
    (lambda d: COCO, dict(backend='openvino',
                          num_threads=0), 'num_threads must be >= 1, got 0'),
    (lambda d: COCO, dict(precision='bf16', optimize=False),
     "precision 'bf16' is an optimisation: it needs optimize=True"),
    (lambda d: COCO, dict(post='quarter'),
     "^post must be one of exact, half, got 'quarter'.$"),
    (lambda d: COCO, dict(post='half', optimize=False),
     "post 'half' is an optimisation: it needs optimize=True"),
])
def test_bad_arguments_are_explained(tmp_path, make, kwargs, message):
    kwargs.setdefault('device', 'cpu')
    with pytest.raises(InputError, match=message):
        RapSAMPredictor(make(tmp_path), **kwargs)


def test_cuda_without_a_gpu_names_the_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    with pytest.raises(
            InputError,
            match="Device 'cuda' is not available "
            r'\(PyTorch sees 0 CUDA GPUs\); available here: cpu'):
        RapSAMPredictor(COCO, device='cuda')


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(backend='torch'),
         'from_export runs an export folder on a runtime'),
        (dict(backend='openvino', precision='fp16'),
         r'The openvino backend runs fp32, bf16, int8, int8-bf16, not fp16; '
         r'fp16 runs on torch only \(RapSAMPredictor with a config and '
         r'checkpoint\)\.$'),
        (dict(num_threads='2'), 'num_threads must be a whole number'),
        (dict(post='full'), "post must be one of exact, half, got 'full'"),
        # ONNX Runtime ran for minutes with 1000.
        (dict(num_threads=1000),
         r'num_threads 1000 is far above the \d+ cores '
         r'this process may use: give at most \d+'),
    ])
def test_bad_from_export_arguments(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        RapSAMPredictor.from_export(str(tmp_path), **kwargs)


def test_an_export_path_that_is_a_file(tmp_path):
    from rap_sam.deploy.deploy_spec import DeployFolderError
    (tmp_path / 'model.pth').write_bytes(b'weights')
    with pytest.raises(
            DeployFolderError,
            match=f'^{tmp_path}/model.pth is a file, not an export folder: '):
        RapSAMPredictor.from_export(str(tmp_path / 'model.pth'))


def test_reference_mode_gives_the_fast_results(weights, predictor, photo):
    """optimize=False runs prepare(model, 'reference') (mmcv's kernel,
    unfolded BN, full-size fusion) and still reports the segment table."""
    reference = RapSAMPredictor(
        COCO, weights, 'cpu', scale=(96, 64), optimize=False)
    assert reference.model.deploy_setting['mode'] == 'reference'
    reference.model.panoptic_fusion_head.test_cfg.update(
        predictor.model.panoptic_fusion_head.test_cfg)
    result = reference.segment_image(photo)
    expected = predictor.segment_image(photo)
    assert expected.pred_panoptic_seg.segments, 'compare non-empty results'
    assert [(s['id'], s['label'], s['area'])
            for s in result.pred_panoptic_seg.segments] == \
        [(s['id'], s['label'], s['area'])
         for s in expected.pred_panoptic_seg.segments]
    assert torch.equal(result.pred_panoptic_seg.sem_seg,
                       expected.pred_panoptic_seg.sem_seg)


def test_set_image_makes_the_pixel_table_the_clicks_read(predictor, photo):
    """The map's pixel table is made by set_image, not by the first click;
    clicks read it and give what the path without it gives."""
    from rap_sam.models.layers import LowRankFeatureMap
    predictor.set_image(photo)
    feats = predictor._image['feats']
    assert isinstance(feats, LowRankFeatureMap)
    table = feats._cache['pixel_table']
    columns = feats._cache['pixel_columns']
    assert torch.equal(columns, table) and columns.is_contiguous()
    first = predictor.predict_prompts(points=[[70, 40]], boxes=[10, 5, 90, 60])
    assert feats.pixel_table() is table
    assert feats.pixel_columns() is columns
    feats.use_pixel_table = False
    try:
        plain = predictor.predict_prompts(
            points=[[70, 40]], boxes=[10, 5, 90, 60])
    finally:
        feats.use_pixel_table = True
    got, want = first.pred_instances, plain.pred_instances
    assert got.masks.shape == (2, 100, 150)
    assert (got.masks != want.masks).float().mean() < 1e-3
    torch.testing.assert_close(
        got.iou_scores, want.iou_scores, rtol=1e-5, atol=1e-6)


def test_half_post_processing_is_opt_in_and_close(weights, predictor, photo):
    """post='half': the fusion at half size (HalfResolutionFusionHead), the
    results of the exact one's shapes, their masks within a pixel of the
    edges; the default stays exact."""
    from rap_sam.models.seg_heads import ScoredPanopticFusionHead
    from rap_sam.models.seg_heads.half_resolution_fusion_head import \
        HalfResolutionFusionHead
    assert type(predictor.model.panoptic_fusion_head) is \
        ScoredPanopticFusionHead
    half = RapSAMPredictor(COCO, weights, 'cpu', scale=(96, 64), post='half')
    head = half.model.panoptic_fusion_head
    assert isinstance(head, HalfResolutionFusionHead)
    assert half.model.deploy_setting['post'] == 'half'
    head.test_cfg.update(predictor.model.panoptic_fusion_head.test_cfg)
    result = half.segment_image(photo)
    expected = predictor.segment_image(photo)
    pan, ref_pan = result.pred_panoptic_seg, expected.pred_panoptic_seg
    assert ref_pan.segments, 'compare non-empty results'
    assert pan.sem_seg.shape == ref_pan.sem_seg.shape == (1, 100, 150)
    # Random weights: noisy masks, so many edges (93 % here, 99.8 % on
    # trained-like masks: docs/deploy.md).
    assert (pan.sem_seg == ref_pan.sem_seg).float().mean() > 0.9
    ins, ref = result.pred_instances, expected.pred_instances
    assert ins.masks.shape == ref.masks.shape
    assert ins.masks.dtype == ref.masks.dtype == torch.bool
    # Pooled over the masks: a random model's noisy masks on this
    # 150 x 100 photo are mostly edge (0.79 here); the head's own tests
    # check known shapes, docs/deploy.md trained-like masks (IoU 0.97).
    inter = (ins.masks & ref.masks).sum()
    assert inter / (ins.masks | ref.masks).sum() > 0.7


@pytest.mark.parametrize(
    'has_bf16, notices',
    [
        (False, [
            "precision 'bf16': this CPU has neither AVX-512 BF16 nor AMX, so "
            'torch computes bf16 many times slower than fp32; use fp32 '
            '(or int8 from an int8 export) here.'
        ]),
        (True, []),
        (None, []),  # flags unknown (not Linux): nothing said
    ])
def test_bf16_on_a_cpu_without_bf16_is_said(monkeypatch, has_bf16, notices):
    from rap_sam.apis import predictor as predictor_module
    from rap_sam.utils.user_errors import UserNotice
    monkeypatch.setattr(predictor_module, 'cpu_has_bf16', lambda: has_bf16)
    with pytest.warns(UserNotice) as caught:  # random weights, at least
        model = RapSAMPredictor(
            config_path('rap_sam/toy_eval_coco.py'), precision='bf16')
    # Said of the caller's line, as the random-weights notice is.
    said = [(str(w.message), w.filename) for w in caught
            if 'AVX-512' in str(w.message)]
    assert said == [(notice, __file__) for notice in notices]
    assert model.model.deploy_setting['precision'] == 'bf16'
