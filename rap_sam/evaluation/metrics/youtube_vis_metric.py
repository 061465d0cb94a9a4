import types

import numpy
from mmdet.evaluation import YouTubeVISMetric
from mmdet.evaluation.functional import ytviseval
from mmdet.registry import METRICS


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy plus the ``np.float`` alias that NumPy 1.24 removed."""
    float = float

    def __getattr__(self, name):
        return getattr(numpy, name)


def patch_ytviseval_numpy() -> None:
    """mmdet 3.3's ``YTVISeval.accumulate`` calls ``np.float`` and fails on
    NumPy >= 1.24 whenever AP is computed; give that one module an ``np``
    that still has the alias (numpy itself stays untouched)."""
    if not hasattr(numpy, 'float') and \
            not isinstance(ytviseval.np, _NumpyWithFloatAlias):
        ytviseval.np = _NumpyWithFloatAlias('numpy')


@METRICS.register_module()
class YouTubeVISMetricCompat(YouTubeVISMetric):
    """mmdet's ``YouTubeVISMetric`` (same arguments, keys and files) whose
    AP computation also runs on NumPy >= 1.24."""

    def compute_metrics(self, results: list) -> dict:
        if not self.format_only:
            patch_ytviseval_numpy()
        return super().compute_metrics(results)
