from .dump_det_results import SafeDumpDetResults
from .interactive_metric import InteractiveMetric, mask_ious
from .youtube_vis_metric import YouTubeVISMetricCompat, patch_ytviseval_numpy

__all__ = [
    'InteractiveMetric', 'mask_ious', 'YouTubeVISMetricCompat',
    'patch_ytviseval_numpy', 'SafeDumpDetResults'
]
