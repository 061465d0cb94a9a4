import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.fileio import get
from panopticapi.utils import rgb2id


@TRANSFORMS.register_module()
class LoadPanopticTrainAnnotations(BaseTransform):
    """Every non-crowd panoptic segment, thing or stuff, as one instance.

    RAP-SAM's object queries predict stuff and things alike and prompts may
    fall on either, so both become mask instances (mmdet's
    ``LoadPanopticAnnotations`` keeps things as instances and stuff only in
    a semantic map). Crowd regions (a thing category whose segment is not
    ``is_thing``) are left out: no query is asked to find them, as in
    Mask2Former.

    Adds ``gt_masks`` (BitmapMasks), ``gt_bboxes`` (boxes of the masks),
    ``gt_bboxes_labels`` (contiguous labels: things, then stuff) and
    ``gt_ignore_flags`` (all False). Geometric transforms that follow
    (flip, resize, crop) keep them aligned.
    """

    def __init__(self,
                 num_thing_classes: int = 80,
                 imdecode_backend: str = 'cv2',
                 backend_args: dict = None) -> None:
        self.num_thing_classes = num_thing_classes
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['seg_map_path']
        png = mmcv.imfrombytes(
            get(path, backend_args=self.backend_args),
            flag='color',
            channel_order='rgb',
            backend=self.imdecode_backend)
        if png is None:
            raise ValueError(f"Panoptic PNG '{path}' is not a readable image.")
        pan = rgb2id(png)
        h, w = results['ori_shape']
        if pan.shape != (h, w):
            raise ValueError(
                f"Panoptic PNG '{path}' is {pan.shape[1]}x{pan.shape[0]} but "
                f"its image '{results.get('img_path')}' is {w}x{h}.")
        segments = [
            s for s in results.get('segments_info', [])
            if s['is_thing'] or s['category'] >= self.num_thing_classes
        ]
        masks = np.zeros((len(segments), h, w), dtype=np.uint8)
        for i, segment in enumerate(segments):
            masks[i] = pan == segment['id']
        results['gt_masks'] = BitmapMasks(masks, h, w)
        results['gt_bboxes'] = HorizontalBoxes.from_instance_masks(
            results['gt_masks'])
        results['gt_bboxes_labels'] = np.array(
            [s['category'] for s in segments], dtype=np.int64)
        results['gt_ignore_flags'] = np.zeros(len(segments), dtype=bool)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'num_thing_classes={self.num_thing_classes})')
