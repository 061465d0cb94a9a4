import mmcv
import numpy as np
import pycocotools.mask as mask_utils
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.fileio import get
from panopticapi.utils import rgb2id


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a 2-d mask (``counts`` as bytes)."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


class PanopticSegmentLoader(BaseTransform):
    """Base of the transforms that turn the segments of a panoptic PNG into
    mask instances; subclasses choose the segments and add their own keys.
    """

    def __init__(self,
                 num_thing_classes: int = 80,
                 imdecode_backend: str = 'cv2',
                 backend_args: dict = None) -> None:
        self.num_thing_classes = num_thing_classes
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args

    def load_instances(self, results: dict, segments: list) -> np.ndarray:
        """Read ``results['seg_map_path']`` and add one instance per item of
        ``segments`` (``segments_info`` entries): ``gt_masks`` (BitmapMasks,
        image size), ``gt_bboxes`` (tight boxes of the masks, x2/y2
        exclusive), ``gt_bboxes_labels`` and ``gt_ignore_flags`` (all False).
        Returns the masks as an (N, H, W) uint8 array.
        """
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

        masks = np.zeros((len(segments), h, w), dtype=np.uint8)
        for i, segment in enumerate(segments):
            masks[i] = pan == segment['id']
        results['gt_masks'] = BitmapMasks(masks, h, w)
        results['gt_bboxes'] = HorizontalBoxes.from_instance_masks(
            results['gt_masks'])
        results['gt_bboxes_labels'] = np.array(
            [s['category'] for s in segments], dtype=np.int64)
        results['gt_ignore_flags'] = np.zeros(len(segments), dtype=bool)
        return masks

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'num_thing_classes={self.num_thing_classes})')


@TRANSFORMS.register_module()
class LoadPanopticSegments(PanopticSegmentLoader):
    """Load every segment of a panoptic PNG, things and stuff alike, as an
    instance with a mask (mmdet's ``LoadPanopticAnnotations`` keeps only the
    non-crowd things).

    Added keys, one entry per ``results['segments_info']`` item, in order:
    ``gt_masks`` (BitmapMasks, image size), ``gt_bboxes`` (tight boxes of the
    masks, x2/y2 exclusive), ``gt_bboxes_labels``, ``gt_ignore_flags`` (all
    False), ``gt_is_thing`` (by category: ``label < num_thing_classes``, so
    crowd things count as things), ``gt_segment_ids``, and ``gt_masks_rle``:
    the masks as COCO RLE at the original resolution. Later geometric
    transforms resize ``gt_masks`` but leave ``gt_masks_rle`` alone, which is
    what the interactive metric compares against. For test pipelines only:
    flips and crops would leave ``gt_masks_rle`` behind.
    """

    def transform(self, results: dict) -> dict:
        if results.get('seg_map_path') is None:
            raise ValueError(
                'LoadPanopticSegments needs the panoptic PNG of each image: '
                "set data_prefix=dict(img=..., seg='annotations/"
                "panoptic_val2017/') on the dataset.")
        segments = results.get('segments_info', [])
        masks = self.load_instances(results, segments)
        results['gt_is_thing'] = (
            results['gt_bboxes_labels'] < self.num_thing_classes)
        results['gt_segment_ids'] = np.array([s['id'] for s in segments],
                                             dtype=np.int64)
        results['gt_masks_rle'] = [encode_rle(m) for m in masks]
        return results
