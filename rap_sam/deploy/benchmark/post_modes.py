"""The exact post-processing against an approximate one, on seeded head
outputs (``tools/analysis/postprocess_benchmark.py``)."""
import statistics
from typing import List, Optional, Sequence, Tuple


def post_agreement(exact: dict, approx: dict, num_classes: int) -> dict:
    """How close one image's approximate fusion results are to the exact
    ones (fusion head results: ``pan_results`` and ``ins_results``).

    Returns:
        dict: ``instances``: :func:`~rap_sam.deploy.accuracy.
        match_instances` of the exact instances with a non-empty mask
        (an empty mask matches nothing by IoU) among all approximate ones;
        ``segments``: the same for the panoptic segments;
        ``panoptic_agreement``: pixels with the same panoptic class;
        ``max_score_diff``: of the instance scores, row by row.
    """
    from ..accuracy import (match_instances, panoptic_class_agreement,
                            panoptic_segments)
    ins_e, ins_a = exact['ins_results'], approx['ins_results']
    nonempty = ins_e.masks.flatten(1).any(1)
    pan_e = exact['pan_results'].sem_seg[0]
    pan_a = approx['pan_results'].sem_seg[0]
    return dict(
        instances=match_instances(ins_e[nonempty], ins_a),
        segments=match_instances(
            panoptic_segments(pan_e, num_classes),
            panoptic_segments(pan_a, num_classes)),
        panoptic_agreement=panoptic_class_agreement(pan_e, pan_a),
        max_score_diff=float(
            (ins_e.scores - ins_a.scores).abs().max()) if len(ins_e) else 0.)


def time_post_modes(shape: Tuple[int, int],
                    outputs: Sequence[str] = ('objects', 'random'),
                    repeats: int = 7,
                    warmup: int = 1,
                    seed: int = 0,
                    ori_shape: Optional[Tuple[int, int]] = None,
                    post: str = 'half') -> List[dict]:
    """Time the exact fusion head (``ScoredPanopticFusionHead`` as
    configured) against the approximate post-processing ``post`` on the
    seeded head outputs of ``tools/analysis/postprocess_benchmark.py``
    (:mod:`rap_sam.testing.fusion_outputs`), interleaved: one run of each
    per round, medians over the rounds.

    Returns:
        list[dict]: Per kind of outputs: ``outputs``, ``num_instances``
        and ``num_segments`` (the exact results'), ``median_s`` and
        ``median_cpu_s`` (``exact`` and ``post``), ``speedup`` (exact /
        post, wall), ``cpu_speedup`` and :func:`post_agreement`'s
        figures.
    """
    from rap_sam.apis.inputs import InputError
    from rap_sam.models.seg_heads import ScoredPanopticFusionHead
    from rap_sam.testing.fusion_outputs import (coco_fusion_kwargs,
                                                fusion_sample, seeded_outputs,
                                                time_heads)
    from ..prepare import POSTS, post_head
    if post not in POSTS or post == 'exact':
        raise InputError(f'--post {post}: choose one of '
                         f'{", ".join(p for p in POSTS if p != "exact")}')
    sample = fusion_sample(shape, ori_shape, outputs)
    exact = ScoredPanopticFusionHead(**coco_fusion_kwargs())
    heads = dict(exact=exact, post=post_head(exact, post))
    results = []
    for kind in outputs:
        cls, masks = seeded_outputs(kind, shape, seed)
        got, wall, cpu = time_heads(heads, cls, masks, sample, warmup, repeats)
        med = {v: statistics.median(t) for v, t in wall.items()}
        med_cpu = {v: statistics.median(t) for v, t in cpu.items()}
        results.append(
            dict(
                outputs=kind,
                num_instances=len(got['exact']['ins_results']),
                num_segments=len(got['exact']['pan_results'].segments),
                median_s=med,
                median_cpu_s=med_cpu,
                samples_s=wall,
                speedup=med['exact'] / med['post'],
                cpu_speedup=med_cpu['exact'] / med_cpu['post'],
                **post_agreement(got['exact'], got['post'],
                                 heads['exact'].num_classes)))
    return results
