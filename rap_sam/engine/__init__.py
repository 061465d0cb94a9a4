from .nonfinite_loss import NonFiniteLossError, check_losses_finite
from .skipped_samples_hook import SkippedSamplesHook

__all__ = ['NonFiniteLossError', 'check_losses_finite', 'SkippedSamplesHook']
