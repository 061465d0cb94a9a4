from .metrics import InteractiveMetric, YouTubeVISMetricCompat

__all__ = ['InteractiveMetric', 'YouTubeVISMetricCompat']
