import torch
import torch.nn as nn


def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Give every parameter and BN statistic seeded random values of a
    sensible scale, so outputs depend on all weights (zero-initialised
    offsets or biases would hide bugs). Used by the tests, the benchmark and
    the analysis tools when no checkpoint is given."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not p.is_floating_point():
                continue
            if name.endswith('running_var'):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('running_mean'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() <= 1:
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.1 +
                    (1.0 if name.endswith('weight') else 0.0))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
