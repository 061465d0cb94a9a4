"""Export round trip: the three graphs in ONNX Runtime give the torch
model's head outputs on a real photo; standard operators; bad folders."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import REPO, load_config, randomize_
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from rap_sam.deploy.deploy_spec import DeployFolderError, read_deploy_spec
from rap_sam.deploy.export import ExportError, export_model

SCALE = (320, 192)  # (w, h)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    cfg = load_config('rap_sam/toy_eval_coco.py')
    cfg.model.panoptic_head.ov_classifier_name = None  # seeded random
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    randomize_(model, 0)
    model.eval()
    out = str(tmp_path_factory.mktemp('export') / 'toy')
    export_model(model, out, cfg=cfg, scale=SCALE)
    return model, out


def _assert_close(got, want):
    """1e-3 relative, and 1e-4 of the tensor's largest magnitude for the
    values near 0: float rounding of reordered sums, whose error follows
    the terms summed, not the sum (on an AVX2-only CPU a class logit of
    0.27 among logits up to 27 moved by 1.7e-3)."""
    want = torch.as_tensor(want)
    scale = max(1.0, float(want.abs().max()))
    torch.testing.assert_close(
        torch.as_tensor(got), want, rtol=1e-3, atol=1e-4 * scale)


def test_round_trip_on_a_photo(toy):
    """fp32 ONNX Runtime vs the model's own head.predict to float rounding
    (:func:`_assert_close`)."""
    model, out = toy
    spec = read_deploy_spec(out)
    pre = spec.image_preprocessor()
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    image, meta = pre(img)
    sess = {
        n:
        ort.InferenceSession(
            osp.join(out, f), providers=['CPUExecutionProvider'])
        for n, f in spec.graph_files.items()
    }
    feats = dict(
        zip(spec.feature_names,
            sess['image_encoder'].run(None, {'image': image})))
    x = torch.from_numpy(image)
    with torch.no_grad():
        ref_feats = model.extract_feat(x)
        cls, masks, _, _ = model.panoptic_head.predict(ref_feats,
                                                       [DetDataSample()])
        h, w = meta['img_shape'][:2]
        boxes = torch.tensor([[10., 20., 120., 150.], [40., 40., 46., 46.],
                              [0., 0., w - 1., h - 1.]])
        sample = DetDataSample(metainfo=dict(img_shape=(h, w)))
        sample.gt_instances_collected = InstanceData(
            point_coords=boxes, pb_labels=torch.ones(3, dtype=torch.long))
        p_cls, p_masks, p_iou, _ = model.panoptic_head.predict(
            ref_feats, [sample])
    o_cls, o_masks = sess['panoptic_decoder'].run(None, feats)
    _assert_close(o_cls, cls)
    _assert_close(o_masks, masks)
    for n in (3, 1):  # the number of prompts is free
        outs = sess['prompt_decoder'].run(
            None,
            dict(
                feats,
                boxes=boxes[:n].numpy(),
                img_shape=np.array([h, w], spec.img_shape_dtype)))
        for got, want in zip(outs, (p_cls, p_masks, p_iou)):
            _assert_close(got, want[:, :n])


def test_graphs_use_standard_ops(toy):
    _, out = toy
    for name in ('image_encoder', 'panoptic_decoder', 'prompt_decoder'):
        model = onnx.load(osp.join(out, f'{name}.onnx'))
        onnx.checker.check_model(model)
        assert {n.domain for n in model.graph.node} <= {'', 'ai.onnx'}
        assert not {n.op_type for n in model.graph.node} & {'Loop', 'Scan'}
        assert max(
            o.version for o in model.opset_import
            if o.domain in ('', 'ai.onnx')) >= 17


def test_refuses_a_non_empty_folder(toy, tmp_path):
    model, _ = toy
    (tmp_path / 'keep.txt').write_text('mine')
    with pytest.raises(ExportError, match='not empty'):
        export_model(model, str(tmp_path), scale=SCALE)
    assert (tmp_path / 'keep.txt').read_text() == 'mine'


def test_an_export_made_meanwhile_in_the_folder_stays(toy, tmp_path,
                                                      monkeypatch):
    """Two exports to one new folder at once: both pass the check before
    the work; the one that finishes second ends in an error instead of
    replacing the other's files (a mix of two exports' graphs or a lost
    one)."""
    import rap_sam.deploy.export as export
    from rap_sam.utils.output_files import OutputError
    model, _ = toy
    out = tmp_path / 'out'
    write_spec = export.write_spec

    def other_run_finishes_first(work, spec):
        out.mkdir()
        (out / 'deploy.json').write_text('{"the": "other run"}')
        write_spec(work, spec)

    monkeypatch.setattr(export, 'write_spec', other_run_finishes_first)
    with pytest.raises(OutputError, match='filled by someone else'):
        export_model(model, str(out), scale=SCALE)
    assert os.listdir(out) == ['deploy.json']
    assert (out / 'deploy.json').read_text() == '{"the": "other run"}'
    assert os.listdir(tmp_path) == ['out']  # no work folder left


def test_bad_folders_name_the_file(toy, tmp_path):
    _, out = toy
    import shutil
    broken = tmp_path / 'broken'
    shutil.copytree(out, broken)
    os.remove(broken / 'prompt_decoder.onnx')
    with pytest.raises(DeployFolderError, match='prompt_decoder.onnx'):
        read_deploy_spec(str(broken))
    # A graph of another shape under the right name.
    shutil.copy(broken / 'panoptic_decoder.onnx',
                broken / 'prompt_decoder.onnx')
    with pytest.raises(DeployFolderError, match='prompt_decoder.onnx'):
        read_deploy_spec(str(broken))
    spec_file = broken / 'deploy.json'
    spec_file.write_text('{not json')
    with pytest.raises(DeployFolderError, match='deploy.json'):
        read_deploy_spec(str(broken))
    with open(osp.join(out, 'deploy.json')) as f:
        data = json.load(f)
    del data['classes']
    spec_file.write_text(json.dumps(data))
    with pytest.raises(DeployFolderError, match='deploy.json.*classes'):
        read_deploy_spec(str(broken))
    with pytest.raises(DeployFolderError, match='not found'):
        read_deploy_spec(str(tmp_path / 'nothing'))


def test_dynamic_export_at_other_sizes(toy, tmp_path):
    """--dynamic: one export runs landscape and portrait inputs (padded to
    the size divisor only) with the torch model's outputs."""
    model, _ = toy
    out = str(tmp_path / 'dynamic')
    export_model(model, out, scale=(64, 64), dynamic=True)
    spec = read_deploy_spec(out)
    assert spec['dynamic'] is True and spec.pad_shape is None
    assert spec['graphs']['image_encoder']['inputs']['image']['shape'] == [
        1, 3, 'H', 'W'
    ]
    sess = {
        n:
        ort.InferenceSession(
            osp.join(out, f), providers=['CPUExecutionProvider'])
        for n, f in spec.graph_files.items()
    }
    for h, w in ((96, 128), (128, 64)):
        image = torch.randn(
            1, 3, h, w, generator=torch.Generator().manual_seed(h))
        feats = dict(
            zip(spec.feature_names,
                sess['image_encoder'].run(None, {'image': image.numpy()})))
        with torch.no_grad():
            cls, masks, _, _ = model.panoptic_head.predict(
                model.extract_feat(image), [DetDataSample()])
        o_cls, o_masks = sess['panoptic_decoder'].run(None, feats)
        assert o_masks.shape == (1, cls.shape[1], h // 4, w // 4)
        _assert_close(o_cls, cls)
        _assert_close(o_masks, masks)
        _, p_masks, _ = sess['prompt_decoder'].run(
            None,
            dict(
                feats,
                boxes=np.array([[4., 4., 20., 30.]], np.float32),
                img_shape=np.array([h, w], spec.img_shape_dtype)))
        assert p_masks.shape == (1, 1, h // 4, w // 4)
