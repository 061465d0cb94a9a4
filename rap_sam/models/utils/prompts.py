import torch
from torch import Tensor

# The released model saw every click as a box of +-3 pixels around it.
CLICK_RADIUS = 3


def clicks_to_boxes(points: Tensor, radius: float = CLICK_RADIUS) -> Tensor:
    """``[N, 2]`` (x, y) clicks -> ``[N, 4]`` (x1, y1, x2, y2) boxes, the
    form the model takes prompts in."""
    points = torch.as_tensor(points, dtype=torch.float32)
    if points.dim() != 2 or points.size(-1) != 2:
        raise ValueError(f'clicks must be [N, 2] (x, y), got '
                         f'{tuple(points.shape)}')
    return torch.cat([points - radius, points + radius], dim=-1)
