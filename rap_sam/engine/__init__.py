from .merged_param_groups_constructor import MergedParamGroupsConstructor
from .nonfinite_loss import NonFiniteLossError, check_losses_finite
from .skipped_samples_hook import SkippedSamplesHook

__all__ = [
    'MergedParamGroupsConstructor', 'NonFiniteLossError',
    'check_losses_finite', 'SkippedSamplesHook'
]
