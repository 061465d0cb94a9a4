"""Why the last training sample was rejected.

A training transform rejects a sample by returning None (mmengine's
convention); the dataset then draws another one. The reason is kept here so
that :class:`ConcatOVDataset` can count it per source and the log can say
what was skipped. Transforms and dataset run in the same (worker) process,
one sample at a time, so one slot per process is enough.
"""
from typing import Optional

_reason: Optional[str] = None


def skip_sample(reason: str) -> None:
    """Record ``reason`` and return None: ``return skip_sample('...')``."""
    global _reason
    _reason = reason
    return None


def pop_skip_reason() -> Optional[str]:
    global _reason
    reason, _reason = _reason, None
    return reason


#: Reasons that start with this name a missing or damaged file; the log
#: names each such file once (:class:`~rap_sam.engine.SkippedSamplesHook`).
BAD_FILE = 'bad file: '


def bad_file_reason(problems) -> str:
    """The skip reason for a sample whose files are missing or damaged."""
    return BAD_FILE + '; '.join(problems)


def is_bad_file_reason(reason: str) -> bool:
    return reason.startswith(BAD_FILE)
