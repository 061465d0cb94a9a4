"""What a benchmark reports besides time: FLOPs, peak memory, agreement of a
variant with another, speed-ups, a summary of results."""
import copy
import warnings
from typing import Dict, Optional

import torch
import torch.nn as nn

from .runners import DeployedRunner, Runner


class _HeadForward(nn.Module):

    def __init__(self, head, samples):
        super().__init__()
        self.head = head
        self.samples = samples

    def forward(self, x):
        return self.head(x, self.samples)


def count_flops(model: nn.Module, inputs: torch.Tensor, samples) -> dict:
    """GFLOPs per stage from mmengine's FlopAnalyzer (which, as fvcore,
    counts one multiply-add as one flop; ops it has no handle for, e.g.
    mmcv's kernels and gathers, count zero), counted on the CPU."""
    from mmengine.analysis import FlopAnalyzer

    if inputs.device.type != 'cpu':
        # The count does not depend on the device, but tracing turns sizes
        # into CPU tensors, which ops then meet with the GPU's (clamp(max=
        # w - 1) in the gather deformable conv).
        model = copy.deepcopy(model).cpu()
        inputs = inputs.cpu()
        samples = [sample.cpu() for sample in samples]

    def flops(module, args):
        analyzer = FlopAnalyzer(module, args)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total() / 1e9

    result = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        feats = model.backbone(inputs)
        result['backbone'] = flops(model.backbone, (inputs, ))
        if getattr(model, 'neck', None) is not None:
            result['neck'] = flops(model.neck, (tuple(feats), ))
            feats = model.neck(feats)
        result['head'] = flops(
            _HeadForward(model.panoptic_head, samples), (feats, ))
    result['total'] = sum(result.values())
    return result


def peak_memory_mb(runner: Runner, device: torch.device) -> Optional[float]:
    """Peak tensor memory of one predict beyond what was allocated before
    it: the CUDA allocator's peak on GPUs; on CPUs the running sum of the
    allocations and frees the torch profiler records, in time order (op
    granularity). None for a runtime (the profiler does not see its
    allocations)."""
    if isinstance(runner, DeployedRunner):
        return None
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.run(record=False)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        runner.run(record=False)
    current = peak = 0
    for event in sorted(p.events(), key=lambda e: e.time_range.start):
        current += (
            event.cpu_memory_usage
            if event.name == '[memory]' else event.self_cpu_memory_usage)
        peak = max(peak, current)
    return peak / 2**20


# ----------------------------------------------------------------------
# agreement of a variant with another
# ----------------------------------------------------------------------
def compare_results(ours, reference) -> dict:
    """Agreement of predictions: panoptic pixels (the same id, and the same
    class), instances (in the same order: labels, scores, masks; and
    matched one to one by mask IoU, as
    :func:`rap_sam.deploy.accuracy.match_instances` does for approximate
    modes, whose instances may change order)."""
    from ..accuracy import match_instances, panoptic_class_agreement
    out = {}
    a, b = ours[0], reference[0]
    if 'pred_panoptic_seg' in b:
        pa, pb = a.pred_panoptic_seg.sem_seg, b.pred_panoptic_seg.sem_seg
        out['panoptic_pixel_agreement'] = (pa == pb).float().mean().item()
        out['panoptic_class_agreement'] = panoptic_class_agreement(pb, pa)
    if 'pred_instances' in b:
        ia, ib = a.pred_instances, b.pred_instances
        out['instances'] = [len(ia), len(ib)]
        if len(ia) == len(ib) and len(ib) > 0:
            out['instance_labels_equal'] = bool(
                torch.equal(ia.labels, ib.labels))
            out['instance_scores_max_abs_diff'] = (
                ia.scores - ib.scores).abs().max().item()
            ma, mb = ia.masks.bool(), ib.masks.bool()
            inter = (ma & mb).flatten(1).sum(1).float()
            union = (ma | mb).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), 1.)
            out['instance_mask_iou_min'] = iou.min().item()
            out['instance_mask_pixel_agreement'] = (
                ma == mb).float().mean().item()
        if len(ib) > 0 and 'labels' in ib:
            match = match_instances(ib, ia)
            out['instances_kept'] = match['kept']
            out['kept_mask_iou_mean'] = match['mean_iou']
    return out


def head_output_error(ours, reference) -> dict:
    """Largest error of the head's class and mask logits relative to the
    reference's magnitudes, both runners (torch or runtime) fed the same
    image."""
    (ca, ma), (cb, mb) = ours.head_outputs(), reference.head_outputs()
    return dict(
        class_logits_rel_err=((ca - cb).abs().max() /
                              cb.abs().max().clamp(min=1e-6)).item(),
        mask_logits_rel_err=((ma - mb).abs().max() /
                             mb.abs().max().clamp(min=1e-6)).item(),
        mask_sign_agreement=((ma > 0) == (mb > 0)).float().mean().item())


def speedups(medians: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """Speed ratios from each variant's median stage times: every variant
    against ``reference`` end to end, and against ``mask2former`` end to
    end and over the network's forward (encoder and head: backbone, neck
    and decoder)."""
    ratios = {}
    if 'reference' in medians:
        for name, med in medians.items():
            if name not in ('reference', 'mask2former'):
                ratios[f'{name}_vs_reference_e2e'] = medians['reference'][
                    'e2e'] / med['e2e']
    if 'mask2former' in medians:
        m2f = medians['mask2former']
        # Mask2Former's pixel decoder is in its head.
        m2f_fwd = m2f.get('encoder', 0.) + m2f.get('head', 0.)
        for name, med in medians.items():
            if name == 'mask2former':
                continue
            fwd = med.get('encoder', 0.) + med.get('head', 0.)
            ratios[f'{name}_vs_mask2former_e2e'] = m2f['e2e'] / med['e2e']
            ratios[f'{name}_vs_mask2former_forward'] = m2f_fwd / fwd
    return ratios


def summarise(model: nn.Module, results) -> dict:
    """What the post-processing produced (it depends on the weights), for
    the first image (the last frame of a clip)."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from mmdet.structures import TrackDataSample
    sample = results[0]
    if isinstance(sample, TrackDataSample):
        sample = sample[len(sample) - 1]
    out = {}
    if 'pred_panoptic_seg' in sample:
        ids = torch.unique(sample.pred_panoptic_seg.sem_seg)
        background = model.panoptic_fusion_head.num_classes
        out['panoptic_segments'] = int((ids % INSTANCE_OFFSET
                                        != background).sum())
    for key in ('pred_instances', 'pred_track_instances'):
        if key in sample:
            out['instances'] = len(sample.get(key))
    return out
