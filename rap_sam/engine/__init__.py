from .atomic_checkpoint_hook import AtomicCheckpointHook
from .checkpoint_files import find_resumable_checkpoint, is_complete_checkpoint
from .main_process_logger_hook import MainProcessLoggerHook
from .merged_param_groups_constructor import MergedParamGroupsConstructor
from .nonfinite_loss import NonFiniteLossError, check_losses_finite
from .skipped_samples_hook import SkippedSamplesHook

__all__ = [
    'AtomicCheckpointHook', 'find_resumable_checkpoint',
    'is_complete_checkpoint', 'MainProcessLoggerHook',
    'MergedParamGroupsConstructor', 'NonFiniteLossError',
    'check_losses_finite', 'SkippedSamplesHook'
]
