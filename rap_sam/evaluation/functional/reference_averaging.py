"""Which per-segment scores the reference's COCO-SAM number averaged.

The reference's ``InteractiveEvaluator`` kept one IoU per *segment* in each
process and gathered them with ``mmengine.dist.collect_results(ious,
size)``, where ``size`` is the number of *images*. ``collect_results``
interleaves the processes' lists (first item of rank 0, of rank 1, ...,
second item of rank 0, ...) and cuts the result at ``size``, which is
meant to drop a sampler's padded duplicates. With one entry per segment it
drops most segments instead, and which ones depends on the number of
processes. :func:`reference_segment_subset` replays that for a given
number of processes, so that the published figure can be reproduced.
"""
import math
from itertools import chain, zip_longest
from typing import List, Sequence

import numpy as np

from rap_sam.utils.user_errors import UserError


class ReferenceAveragingError(UserError, ValueError):
    """A wrong ``reference_averaging`` setting of ``InteractiveMetric``."""


def default_sampler_indices(size: int, num_processes: int,
                            rank: int) -> List[int]:
    """The images of ``rank`` under mmengine's ``DefaultSampler`` with
    ``shuffle=False, round_up=True`` (the reference's test sampler): every
    ``num_processes``-th index from ``rank``, the index list repeated from
    its start until all processes get equally many."""
    total = math.ceil(size / num_processes) * num_processes
    indices = list(range(size)) * (total // max(size, 1) + 1)
    return indices[:total][rank:total:num_processes]


def reference_segment_subset(per_image: Sequence[np.ndarray],
                             num_processes: int,
                             zip_longest_collect: bool = False) -> np.ndarray:
    """The per-segment values that the reference averaged.

    Args:
        per_image: one array per image, in dataset order, of the values of
            that image's segments in prompt order.
        num_processes: how many processes the reference's run used.
        zip_longest_collect: how ``collect_results`` interleaves lists of
            unequal length. False: it stops at the shortest list, as in
            mmengine before 0.10.3 (the reference pins 0.8.4); True: it
            goes on with the longer lists (mmengine >= 0.10.3). The two
            differ only when a process holds fewer segments than
            ``ceil(images / num_processes)``.

    Returns:
        The values in the order ``collect_results`` returned them, at most
        ``len(per_image)`` of them.
    """
    size = len(per_image)
    parts = [
        np.concatenate([
            np.asarray(per_image[i], dtype=float)
            for i in default_sampler_indices(size, num_processes, r)
        ] + [np.zeros(0)]) for r in range(num_processes)
    ]
    if num_processes == 1:
        # collect_results returns a single process's list as it is.
        return parts[0][:size]
    if zip_longest_collect:
        ordered = [
            v for v in chain.from_iterable(zip_longest(*parts))
            if v is not None
        ]
    else:
        ordered = list(chain.from_iterable(zip(*parts)))
    return np.asarray(ordered[:size], dtype=float)
