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
from typing import Tuple

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
        # A signed distance in pixels (about), positive inside.
        masks[q] = (1 - r) * min(a, b) * 2
        if q >= num_queries - num_empty:
            masks[q] = -masks[q].abs() - 1
        if q < num_confident:
            label = (num_things_classes + q % num_stuff_classes) if stuff \
                else q % num_things_classes
            cls[q, label] = 12.
        else:
            cls[q, -1] = 2.  # unsure: background is the likeliest class
    masks += torch.randn(num_queries, h, w, generator=g) * 0.5
    return cls[None], masks[None]
