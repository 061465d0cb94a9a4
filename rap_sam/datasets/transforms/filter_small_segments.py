import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS

from ..skipped_samples import skip_sample

_INSTANCE_KEYS = ('gt_masks', 'gt_bboxes', 'gt_bboxes_labels',
                  'gt_ignore_flags', 'gt_instances_ids')


def _keep(results: dict, keep: np.ndarray, frame=None) -> None:
    for key in _INSTANCE_KEYS:
        if results.get(key) is None:
            continue
        if frame is None:
            results[key] = results[key][keep]
        else:
            results[key][frame] = results[key][frame][keep]


@TRANSFORMS.register_module()
class FilterSmallSegments(BaseTransform):
    """Drop segments that the crop left smaller than ``min_area`` pixels,
    and reject the sample (None: the dataset draws another) when none is
    left, so a random crop of sky-less background never trains the model on
    an empty target.

    Works on images and on clips (per-frame lists after a frame sampler):
    in a clip a track is kept whole if it reaches ``min_area`` in some
    frame, since a few pixels of an object leaving the view are still that
    object; only empty frame masks are dropped.
    """

    def __init__(self, min_area: int = 1) -> None:
        self.min_area = max(int(min_area), 1)

    def transform(self, results: dict):
        if isinstance(results['img'], list):
            return self._clip(results)
        keep = results['gt_masks'].areas >= self.min_area
        _keep(results, keep)
        if not keep.any():
            return skip_sample(
                f'no segment of >= {self.min_area} px left after the crop '
                f"of '{results.get('img_path')}'")
        return results

    def _clip(self, results: dict):
        areas = [m.areas for m in results['gt_masks']]
        ids = results['gt_instances_ids']
        large = set()
        for frame_ids, frame_areas in zip(ids, areas):
            large.update(frame_ids[frame_areas >= self.min_area].tolist())
        for t, (frame_ids, frame_areas) in enumerate(zip(ids, areas)):
            keep = (frame_areas > 0) & np.isin(frame_ids, list(large))
            _keep(results, keep, frame=t)
        if not large:
            return skip_sample(
                f'no object of >= {self.min_area} px left after the crop of '
                f"the clip of '{results['img_path'][0]}'")
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(min_area={self.min_area})'
