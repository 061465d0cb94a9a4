import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ImageAsClip(BaseTransform):
    """Turn an image's results into a 1-frame clip for ``PackTrackInputs``.

    COCO panoptic trains beside YouTube-VIS as 1-frame videos, so both go
    through the same clip path of the model and their batches look alike.
    Every instance becomes a track of its own (ids 1..N).
    """

    def transform(self, results: dict) -> dict:
        num = len(results['gt_bboxes_labels'])
        clip = {key: [value] for key, value in results.items()}
        boxes = results.get('gt_bboxes')
        if boxes is not None and not isinstance(boxes, np.ndarray):
            # PackTrackInputs takes boxes as arrays, as video loaders give
            clip['gt_bboxes'] = [boxes.numpy()]
        clip['gt_instances_ids'] = [np.arange(1, num + 1, dtype=np.int64)]
        clip['frame_id'] = [0]
        clip['video_id'] = [results.get('img_id')]
        clip['video_length'] = [1]
        clip['ori_video_length'] = [1]
        return clip
