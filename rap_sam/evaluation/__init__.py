from .functional import (ReferenceAveragingError, default_sampler_indices,
                         reference_segment_subset)
from .metrics import InteractiveMetric, YouTubeVISMetricCompat

__all__ = [
    'InteractiveMetric', 'YouTubeVISMetricCompat', 'ReferenceAveragingError',
    'default_sampler_indices', 'reference_segment_subset'
]
