"""The loss pieces on hand-made inputs with known answers."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData


@pytest.fixture(scope='module')
def head():
    cfg = Config.fromfile(f'{REPO}/configs/rap_sam/rap_sam_r50_12e_adaptor.py')
    head_cfg = cfg.model.panoptic_head
    head_cfg.update(
        feat_channels=32,
        num_queries=3,
        cls_embed_dims=16,
        ov_classifier_name=None,
        num_things_classes=2,
        num_stuff_classes=1,
        train_cfg=cfg.model.train_cfg)
    head_cfg.loss_cls.class_weight = [1.0] * 3 + [0.1]
    head_cfg.train_cfg.num_points = 4096
    torch.manual_seed(0)
    return MODELS.build(head_cfg)


def _squares(size=32):
    """Two squares, the top quarters of a square canvas."""
    half = size // 2
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, :half, :half] = True
    masks[1, :half, half:] = True
    return masks


def test_perfect_masks_give_near_zero_mask_losses(head):
    target = _squares(256)  # large, so few points fall on the border
    logits = (target.float() * 2 - 1) * 20
    # Uniform points: importance sampling would put most of them on the
    # border, where interpolated logits and targets differ by design.
    head.importance_sample_ratio = 0.0
    try:
        loss_mask, loss_dice = head.point_mask_losses(logits, target)
        wrong_mask, wrong_dice = head.point_mask_losses(-logits, target)
    finally:
        head.importance_sample_ratio = 0.75
    assert loss_dice.item() < 0.05 and loss_mask.item() < 0.1
    # dice of the complement is ~1, times its loss weight 5
    assert wrong_dice.item() == pytest.approx(5.0, abs=0.1)
    assert wrong_mask.item() > 50


def test_hungarian_matching_finds_the_right_queries(head):
    target = InstanceData(labels=torch.tensor([0, 2]), masks=_squares())
    logits = torch.full((3, 8, 8), -20.)
    logits[2, :4, :4] = 20.  # query 2 draws gt 0
    logits[0, :4, 4:] = 20.  # query 0 draws gt 1
    scores = torch.zeros(3, 4)
    scores[2, 0] = scores[0, 2] = 10.
    pos, gt = head.assign(scores, logits, target)
    assert dict(zip(pos.tolist(), gt.tolist())) == {0: 1, 2: 0}


def test_class_loss_down_weights_background(head):
    target = InstanceData(labels=torch.tensor([1]), masks=_squares()[:1])
    logits = torch.full((1, 3, 8, 8), -20.)
    logits[0, 1, :4, :4] = 20.  # query 1 matches the gt
    scores = torch.randn(1, 3, 4)
    losses, matches = head.object_loss_single(scores, logits, [target])
    assert [m.tolist() for m in matches[0]] == [[1], [0]]
    ce = F.cross_entropy(scores[0], torch.tensor([3, 1, 3]), reduction='none')
    weights = torch.tensor([0.1, 1.0, 0.1])
    expected = 2.0 * (weights * ce).sum() / weights.sum()
    assert losses['loss_cls'].item() == pytest.approx(
        expected.item(), rel=1e-5)
    assert losses['loss_dice'].item() < 1.0  # vs 5.0 for a wrong mask


def _two_outputs_disagreeing():
    """One sample with one target (the top-left square), a stage whose
    query 0 draws it and an adapter whose query 2 does."""
    sample = DetDataSample(metainfo=dict(batch_input_shape=(32, 32)))
    sample.gt_instances = InstanceData(
        labels=torch.tensor([1]), masks=_squares()[:1])
    stage = torch.full((1, 3, 8, 8), -20.)
    stage[0, 0, :4, :4] = 20.
    adapter = torch.full((1, 3, 8, 8), -20.)
    adapter[0, 2, :4, :4] = 20.
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 1, 3, 4, generator=generator)
    return sample, list(scores), [stage, adapter]


@pytest.mark.parametrize('mode,adapter_query', [('own', 2), ('last_stage', 0)])
def test_adapter_matching(head, monkeypatch, mode, adapter_query):
    sample, all_cls, all_masks = _two_outputs_disagreeing()
    monkeypatch.setattr(head, 'forward', lambda x, samples:
                        (all_cls, all_masks, None, None))
    monkeypatch.setattr(head, 'adapter_matching', mode)
    losses = head.object_loss(torch.zeros(1), [sample])
    target = head.object_targets(sample)
    match = [(torch.tensor([adapter_query]), torch.tensor([0]))]
    expected, _ = head.object_loss_single(all_cls[1], all_masks[1], [target],
                                          match)
    # (the mask losses sample random points: compared by size below)
    assert losses['loss_cls'].item() == pytest.approx(
        expected['loss_cls'].item(), rel=1e-6)
    # the adapter's query 0 predicts nothing where the target is
    assert (losses['loss_dice'].item() > 4.0) == (mode == 'last_stage')
    assert (losses['loss_mask'].item() > 10.0) == (mode == 'last_stage')
    assert losses['d0.loss_dice'].item() < 1.0


def test_adapter_matching_rejects_unknown_modes(head):
    cfg = dict(head.train_cfg, adapter_matching='stage')
    with pytest.raises(ValueError, match="'own' or 'last_stage'"):
        head.init_training(cfg)


def test_clip_targets_are_mask_tubes(head):
    frames = []
    for t, ids in enumerate(([1, 2], [2])):  # track 1 leaves after frame 0
        masks = _squares()[:len(ids)].numpy()
        frame = DetDataSample(metainfo=dict(batch_input_shape=(32, 40)))
        frame.gt_instances = InstanceData(
            labels=torch.tensor([0, 1])[:len(ids)]
            if t == 0 else torch.tensor([1]),
            instances_ids=torch.tensor(ids),
            masks=BitmapMasks(masks, 32, 32))
        frames.append(frame)
    target = head.object_targets(TrackDataSample(video_data_samples=frames))
    assert target.labels.tolist() == [0, 1]
    tubes = target.masks.unflatten(1, (2, 32))
    assert tubes.shape == (2, 2, 32, 40)
    assert tubes[0, 0, :16, :16].all() and not tubes[0, 1].any()
    assert tubes[1, 0, :16, 16:32].all() and tubes[1, 1, :16, :16].all()


def test_iou_targets_are_the_iou_of_the_output_mask(head):
    target = _squares()[None]  # [1, 2, 32, 32]
    low = torch.full((1, 2, 8, 8), -10.)
    low[0, 0, :4, :4] = 10.  # exact
    low[0, 1, :4, 4:6] = 10.  # the left half of its square
    sample = DetDataSample(metainfo=dict(img_shape=(32, 32)))
    ious = head.mask_ious(low, target, [sample])
    assert ious[0, 0].item() == pytest.approx(1.0, abs=0.01)
    assert ious[0, 1].item() == pytest.approx(0.5, abs=0.05)


def _prompt_sample(idx=(0, 1)):
    """Clicks in the two squares' corners, each supervised by segment
    ``idx[k]`` (labels 0 and 1)."""
    s = DetDataSample(
        metainfo=dict(img_shape=(32, 32), batch_input_shape=(32, 32)))
    s.gt_instances = InstanceData(
        labels=torch.tensor([0, 1]),
        masks=BitmapMasks(_squares().numpy(), 32, 32))
    s.gt_instances_collected = InstanceData(
        point_coords=torch.tensor([[5., 5., 11., 11.], [21., 5., 27., 11.]]),
        pb_labels=torch.ones(2, dtype=torch.long),
        idx=torch.tensor(idx))
    return s


def test_prompt_loss_switches_the_iou_term(head, monkeypatch):
    x = torch.randn(1, 32, 8, 8)
    head.zero_grad(set_to_none=True)
    head.iou_loss_weight = 0.0
    assert 'loss_iou' not in head.loss(x, [_prompt_sample()])
    head.iou_loss_weight = 1.0
    losses = head.loss(x, [_prompt_sample()])
    assert 'loss_iou' in losses and 'loss_cls' not in losses
    assert all(math.isfinite(v.item()) for v in losses.values())
    total = sum(losses.values())
    total.backward()
    assert head.prompt_iou.weight.grad.abs().sum() > 0
    # the object-only parameters are not used by a prompt batch ...
    assert head.kernels.weight.grad is None
    # ... but join the graph at zero weight under DDP, which needs them
    import rap_sam.models.heads.rap_sam_head_loss as head_loss
    monkeypatch.setattr(head_loss, 'is_distributed', lambda: True)
    sum(head.loss(x, [_prompt_sample()]).values()).backward()
    assert head.kernels.weight.grad is not None
    assert not head.kernels.weight.grad.any()


def test_prompt_class_loss_is_the_segments_cross_entropy(head):
    x = torch.randn(1, 32, 8, 8)
    head.zero_grad()
    head.prompt_box_noise, head.prompt_cls_weight = 0.0, 0.5
    try:
        losses = head.loss(x, [_prompt_sample(idx=(1, 0))])
        with torch.no_grad():
            all_cls = head(x, [_prompt_sample()])[0]
    finally:
        head.prompt_box_noise, head.prompt_cls_weight = 0.004, 0.0
    # one term per stage, the last named as the output
    assert {k
            for k in losses
            if 'cls' in k} == {'d0.loss_cls', 'd1.loss_cls', 'loss_cls'}
    labels = torch.tensor([1, 0])  # through idx: segment 1, then 0
    for key, scores in zip(('d0.loss_cls', 'd1.loss_cls', 'loss_cls'),
                           all_cls[:3]):
        expected = 0.5 * head.loss_cls.loss_weight * F.cross_entropy(
            scores[0], labels)
        assert losses[key].item() == pytest.approx(expected.item(), rel=1e-4)
    losses['loss_cls'].backward()
    assert next(head.mask_heads[-1].cls_proj.parameters()).grad.abs().sum() > 0
