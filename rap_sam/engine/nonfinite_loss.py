"""Stop training on a NaN or infinite loss before it reaches the weights."""
from typing import Dict, Sequence

import torch
from mmengine.logging import MessageHub


class NonFiniteLossError(FloatingPointError):
    """A loss of the current batch is NaN or infinite."""


def _paths(samples: Sequence) -> list:
    paths = []
    for sample in samples:
        frames = sample if hasattr(sample, 'video_data_samples') else [sample]
        paths += [f.metainfo.get('img_path') for f in frames]
    return [p for p in paths if p]


def check_losses_finite(losses: Dict[str, torch.Tensor], source: str,
                        samples: Sequence) -> None:
    """Raise :class:`NonFiniteLossError` naming the iteration, the sample
    source and the images when any loss is not finite.

    It runs in the model's ``loss``, i.e. before backward and the optimizer
    step, so the weights of the last good iteration stay as they are (one
    device sync per iteration).
    """
    values = [
        v.detach().float().sum() for v in losses.values()
        if isinstance(v, torch.Tensor)
    ]
    if not values or bool(torch.isfinite(torch.stack(values).sum())):
        return
    bad = {
        k: float(v.detach().float().sum())
        for k, v in losses.items()
        if isinstance(v, torch.Tensor) and not torch.isfinite(v).all()
    }
    it = MessageHub.get_current_instance().get_info('iter')
    where = f'iteration {it + 1}' if it is not None else 'this iteration'
    paths = _paths(samples)
    raise NonFiniteLossError(
        f'Non-finite loss at {where}, source {source!r}: ' +
        ', '.join(f'{k}={v}' for k, v in bad.items()) +
        (f"; images: {', '.join(paths[:8])}" if paths else '') +
        '. Stopped before backward and the optimizer step, so no weight was '
        'updated with it; resume from the last checkpoint (--resume; a lower '
        'learning rate or training without --amp may help).')
