"""Seeded head outputs for timing and testing the fusion head (the
post-processing) without a trained model.

Random weights give every query a mask over much of the image and no
confident class; a trained model's queries are mostly small objects, a few
confident. :func:`object_like_outputs` makes the latter: each query's mask
logits are a signed distance to an ellipse (positive inside) at the head's
output resolution, with COCO-like sizes, and its class logits make a few
queries confident (panoptic segments, things and stuff) and the rest
unsure (instance candidates only).
"""
import math
import statistics
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor


def object_like_outputs(mask_size: Tuple[int, int] = (200, 336),
                        num_queries: int = 100,
                        num_things_classes: int = 80,
                        num_stuff_classes: int = 53,
                        num_confident: int = 8,
                        num_empty: int = 30,
                        seed: int = 0) -> Tuple[Tensor, Tensor]:
    """Class and mask logits of one image, as the head hands them to the
    fusion head.

    Args:
        mask_size (tuple): ``(h, w)`` of the mask logits (a quarter of the
            padded input's in RAP-SAM).
        num_queries (int): Queries.
        num_things_classes, num_stuff_classes (int): Classes (background
            is one more).
        num_confident (int): Queries with a class score near 1 (the first
            quarter of them stuff, with large regions); they make the
            panoptic result.
        num_empty (int): Queries whose masks are empty (logits < 0
            everywhere), as a trained model's background queries often are.
        seed (int): Seed of the generator (same seed, same outputs).

    Returns:
        tuple: ``cls`` ``[1, N, K + 1]`` and ``masks`` ``[1, N, h, w]``.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = mask_size
    num_classes = num_things_classes + num_stuff_classes
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    masks = torch.empty(num_queries, h, w)
    noise = torch.randn(num_queries, h, w, generator=g) * 0.5
    cls = torch.randn(num_queries, num_classes + 1, generator=g)
    num_stuff = num_confident // 4 if num_stuff_classes else 0
    for q in range(num_queries):
        stuff = q < num_stuff
        if stuff:
            # Stuff: a fifth to a half of the image.
            area = uniform(0.2, 0.5)
        else:
            # COCO's objects: from 0.05 % to 30 % of the image, most small
            # (log-uniform area).
            area = math.exp(uniform(math.log(5e-4), math.log(0.3)))
        aspect = math.exp(uniform(-0.7, 0.7))
        a = math.sqrt(area * h * w / math.pi * aspect)  # semi-axis in x
        b = math.sqrt(area * h * w / math.pi / aspect)  # semi-axis in y
        cx, cy = uniform(0, w), uniform(0, h)
        r = torch.sqrt(((xs - cx) / a)**2 + ((ys - cy) / b)**2)
        # A signed distance in pixels (about), positive inside, with noise.
        masks[q] = (1 - r) * min(a, b) * 2 + noise[q]
        if q >= num_queries - num_empty:
            masks[q] = -masks[q].abs() - 1
        if q < num_confident:
            label = (num_things_classes + q % num_stuff_classes) if stuff \
                else q % num_things_classes
            cls[q, label] = 12.
        else:
            cls[q, -1] = 2.  # unsure: background is the likeliest class
    return cls[None], masks[None]


def random_outputs(mask_size: Tuple[int, int] = (200, 336),
                   num_queries: int = 100,
                   num_classes: int = 133,
                   seed: int = 0) -> Tuple[Tensor, Tensor]:
    """Outputs like a randomly initialised head's: normal logits, so every
    mask covers about half the image and no class is confident."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(1, num_queries, num_classes + 1, generator=g)
    masks = torch.randn(1, num_queries, *mask_size, generator=g)
    return cls, masks


#: The fusion head variants :func:`time_fusion_heads` compares.
FUSION_VARIANTS = ('reference', 'full', 'bands', 'one_worker')


def coco_fusion_kwargs() -> dict:
    """A timed fusion head's arguments (a fresh dict: heads keep their
    ``test_cfg``): COCO's classes, panoptic and instance results, as the
    COCO eval config."""
    return dict(
        num_things_classes=80,
        num_stuff_classes=53,
        test_cfg=dict(panoptic_on=True, instance_on=True))


def fusion_sample(shape: Tuple[int, int],
                  ori_shape: Optional[Tuple[int, int]] = None,
                  outputs: Sequence[str] = ('objects', 'random')):
    """The data sample of a ``shape`` input (padded and image size alike)
    whose results are resized to ``ori_shape`` (by default the same), for
    head outputs ``outputs``; a bad size or kind of outputs is an
    ``InputError`` naming the option."""
    from mmdet.structures import DetDataSample

    from rap_sam.apis.inputs import InputError
    h, w = shape
    if h <= 0 or w <= 0 or h % 4 or w % 4:
        raise InputError(f'--shape {h} {w}: give positive multiples of 4 '
                         '(the mask logits are a quarter of the input)')
    ori_h, ori_w = (h, w) if ori_shape is None else ori_shape
    if ori_h <= 0 or ori_w <= 0:
        raise InputError(f'--ori-shape {ori_h} {ori_w}: give positive sizes')
    unknown = sorted(set(outputs) - {'objects', 'random'})
    if unknown:
        raise InputError(f'unknown outputs {unknown}: choose objects and / '
                         'or random')
    return DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(ori_h, ori_w),
            batch_input_shape=(h, w),
            pad_shape=(h, w)))


def seeded_outputs(kind: str, shape: Tuple[int, int],
                   seed: int) -> Tuple[Tensor, Tensor]:
    """Head outputs of ``kind`` (``objects`` or ``random``) for a ``shape``
    input: :func:`object_like_outputs` or :func:`random_outputs`."""
    make = object_like_outputs if kind == 'objects' else random_outputs
    return make((shape[0] // 4, shape[1] // 4), seed=seed)


def time_heads(heads: Dict[str, object], cls: Tensor, masks: Tensor, sample,
               warmup: int, repeats: int) -> Tuple[dict, dict, dict]:
    """Run each fusion head on the same outputs, interleaved (one run of
    each per round, so that load on the machine falls on all alike).

    Returns:
        tuple: per head name, its last results, and its wall and process
        CPU times (all threads) of the ``repeats`` rounds after ``warmup``.
    """
    got: Dict[str, dict] = {}
    wall: Dict[str, List[float]] = {v: [] for v in heads}
    cpu: Dict[str, List[float]] = {v: [] for v in heads}
    for r in range(warmup + repeats):
        for name, head in heads.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            got[name] = head.predict(cls, masks, [sample], rescale=True)[0]
            if r >= warmup:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return got, wall, cpu


def time_fusion_heads(
        shape: Tuple[int, int],
        outputs: Sequence[str] = ('objects', 'random'),
        repeats: int = 7,
        warmup: int = 1,
        seed: int = 0,
        ori_shape: Optional[Tuple[int, int]] = None) -> List[Dict]:
    """Time the post-processing (the fusion head) on seeded head outputs
    for a ``shape`` input (padded and image size alike; mask logits at a
    quarter of it; results resized to ``ori_shape``, by default the same),
    COCO's classes and the COCO eval config's ``test_cfg`` (panoptic and
    instance results).

    Variants, run interleaved (one run of each per round) so that load on
    the machine falls on all alike; the times are medians over the rounds:

    - ``reference``: mmdet's ``MaskFormerFusionHead`` on every mask
      upsampled (``rap_sam.deploy.ReferenceFusionHead``);
    - ``full``: ``ScoredPanopticFusionHead`` with bands off (every mask it
      reads at full size);
    - ``bands``: ``ScoredPanopticFusionHead`` as configured;
    - ``one_worker``: as ``bands``, with its chunks on the calling thread,
      each operation on all of PyTorch's threads (``chunk_workers = 1``)
      instead of shared among one-core threads.

    Args:
        shape (tuple): ``(H, W)``, multiples of 4.
        outputs (Sequence[str]): ``objects`` (:func:`object_like_outputs`,
            like a trained model's) and / or ``random`` (like random
            weights').
        repeats (int): Timed rounds.
        warmup (int): Untimed rounds first.
        seed (int): Seed of the outputs.
        ori_shape (tuple, optional): ``(H, W)`` of the original image, the
            results' size (a photo's, which the results are resized back
            to).

    Returns:
        list[dict]: Per kind of outputs: ``outputs``, ``segments``,
        ``instances``, ``band_queries`` (instance queries computed on
        the window of rows and columns they span), ``median_s`` (per
        variant), ``samples_s``, ``median_cpu_s`` (the process's CPU time,
        all threads: on a loaded machine, where waiting for a core swamps
        the wall time, the work done) and ``identical`` (every variant's
        results equal the reference's: panoptic, masks, boxes and labels
        bit for bit, scores within 1e-6).
    """
    from rap_sam.deploy import ReferenceFusionHead
    from rap_sam.models.seg_heads import ScoredPanopticFusionHead
    sample = fusion_sample(shape, ori_shape, outputs)
    kwargs = coco_fusion_kwargs()
    heads = dict(
        reference=ReferenceFusionHead(segments=True, **kwargs),
        full=ScoredPanopticFusionHead(**kwargs),
        bands=ScoredPanopticFusionHead(**kwargs),
        one_worker=ScoredPanopticFusionHead(**kwargs))
    heads['full'].band_fraction = -1
    heads['one_worker'].chunk_workers = 1
    results = []
    for kind in outputs:
        cls, masks = seeded_outputs(kind, shape, seed)
        got, samples, cpu = time_heads(heads, cls, masks, sample, warmup,
                                       repeats)
        want = got['reference']
        instances = want['ins_results']
        queries = sorted(
            set(got['bands']['ins_results'].query_indices.tolist()))
        kept = set(heads['bands']._panoptic_queries(
            cls[0])[1].nonzero()[:, 0].tolist())
        head = heads['bands']
        bands = head._bands(
            masks[0], [q for q in queries if q not in kept], sample.metainfo,
            head._band_plan(masks[0], tuple(shape), sample.metainfo, True))
        results.append(
            dict(
                outputs=kind,
                segments=len(want['pan_results'].segments),
                instances=len(instances),
                band_queries=len(bands),
                median_s={
                    v: statistics.median(t)
                    for v, t in samples.items()
                },
                samples_s=samples,
                median_cpu_s={
                    v: statistics.median(t)
                    for v, t in cpu.items()
                },
                identical=all(
                    _same_results(got[v], want)
                    for v in ('full', 'bands', 'one_worker'))))
    return results


def time_prompt_masks(
        shape: Tuple[int, int],
        outputs: Sequence[str] = ('objects', 'random'),
        repeats: int = 7,
        warmup: int = 1,
        seed: int = 0,
        ori_shape: Optional[Tuple[int, int]] = None) -> List[Dict]:
    """Time a click's post-processing: one prompt's mask logits to its
    binary mask at the result's size (:meth:`RapSAM.add_prompt_preds`),
    each non-empty mask of the seeded head outputs taken as a click's.

    Variants, interleaved as in :func:`time_fusion_heads`: ``full`` (the
    full-size calls, :meth:`ScoredPanopticFusionHead.resized_logits` then
    ``> 0``) and ``windows`` (:meth:`ScoredPanopticFusionHead.binary_masks`:
    each mask on the window of rows and columns it spans, where that gives
    the same bits).

    Returns:
        list[dict]: Per kind of outputs: ``outputs``, ``masks`` (clicks
        timed), ``windowed`` (of them computed on a window), ``median_s``
        and ``median_cpu_s`` per variant (one click: a round's time over
        its clicks) and ``identical`` (every mask the same bits).
    """
    from rap_sam.models.seg_heads import ScoredPanopticFusionHead
    meta = fusion_sample(shape, ori_shape, outputs).metainfo
    head = ScoredPanopticFusionHead(**coco_fusion_kwargs())
    variants = dict(
        full=lambda m: head.resized_logits(m, meta, True) > 0,
        windows=lambda m: head.binary_masks(m, meta, True))
    results = []
    for kind in outputs:
        _, masks = seeded_outputs(kind, shape, seed)
        clicks = [m[None] for m in masks[0] if bool((m > 0).any())]
        windowed = sum(
            head.prompt_windows(m, meta, True) is not None for m in clicks)
        wall = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        same = True
        for r in range(warmup + repeats):
            got = {}
            for name, run in variants.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                got[name] = [run(m) for m in clicks]
                if r >= warmup:
                    wall[name].append(
                        (time.perf_counter() - start) / len(clicks))
                    cpu[name].append(
                        (time.process_time() - start_cpu) / len(clicks))
            same = same and all(
                torch.equal(a, b) for a, b in zip(got['full'], got['windows']))
        results.append(
            dict(
                outputs=kind,
                masks=len(clicks),
                windowed=windowed,
                median_s={
                    v: statistics.median(t)
                    for v, t in wall.items()
                },
                median_cpu_s={
                    v: statistics.median(t)
                    for v, t in cpu.items()
                },
                identical=same))
    return results


def _same_results(ours: dict, theirs: dict) -> bool:
    a, b = ours['pan_results'], theirs['pan_results']
    if not torch.equal(a.sem_seg, b.sem_seg) or a.segments != b.segments:
        return False
    a, b = ours['ins_results'], theirs['ins_results']
    for key in ('masks', 'bboxes', 'labels'):
        if not torch.equal(a.get(key), b.get(key)):
            return False
    return torch.allclose(a.scores, b.scores, rtol=1e-6, atol=1e-9)
