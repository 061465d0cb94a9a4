from .reference_averaging import (ReferenceAveragingError,
                                  default_sampler_indices,
                                  reference_segment_subset)

__all__ = [
    'ReferenceAveragingError', 'default_sampler_indices',
    'reference_segment_subset'
]
