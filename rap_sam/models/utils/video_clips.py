from typing import List, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def split_video(num_frames: int, clip_size: int) -> List[Tuple[int, int]]:
    """Cut ``num_frames`` into ``ceil(num_frames / clip_size)`` clips.

    The clips are as the released model was evaluated: when the frames do
    not divide evenly, the last clips are one frame shorter each; when more
    clips would have to shrink than there are clips, only the last one is
    cut short. Returns ``(start, end)`` pairs.
    """
    if num_frames < 1 or clip_size < 1:
        raise ValueError(f'need at least one frame and a clip size >= 1, '
                         f'got {num_frames} frames and clip size {clip_size}')
    num_clips = -(-num_frames // clip_size)
    sizes = [clip_size] * num_clips
    excess = num_clips * clip_size - num_frames
    if excess < num_clips:
        for i in range(excess):
            sizes[num_clips - 1 - i] -= 1
    else:
        sizes[-1] -= excess
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def match_queries(reference: Tensor, current: Tensor) -> Tensor:
    """Order ``current`` queries like ``reference`` ones (MinVIS linking).

    Both are ``[N, C]``; the Hungarian assignment minimises
    ``1 - cosine``. Returns ``perm`` with ``current[perm]`` aligned to
    ``reference``.
    """
    cost = 1 - F.normalize(reference, dim=-1) @ F.normalize(current, dim=-1).T
    _, perm = linear_sum_assignment(cost.float().cpu().numpy())
    return torch.as_tensor(perm, dtype=torch.long, device=current.device)
