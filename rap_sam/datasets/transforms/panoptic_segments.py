import logging
from typing import List, Tuple

import mmcv
import numpy as np
import pycocotools.mask as mask_utils
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.fileio import get
from mmengine.logging import print_log
from panopticapi.utils import rgb2id

from ..data_checks import SampleContentError, first_few

# PNGs already warned about for lacking some of their segments: a PNG is
# read every epoch, and once is enough to say so (per process: data loader
# workers keep their own).
_warned_pngs = set()


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a 2-d mask (``counts`` as bytes)."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _check_absent_segments(path: str, pan: np.ndarray, segments: list,
                           present: np.ndarray) -> None:
    """Raise :class:`SampleContentError` when none of ``segments`` is in the
    id map ``pan`` of the PNG ``path``; warn (once per PNG) when some are
    not (``present`` flags those that are)."""
    absent = [s['id'] for s, p in zip(segments, present) if not p]
    if not present.any():
        # The ids the PNG does hold tell a PNG of another image from one
        # in another encoding (BGR order, a grey id map).
        held = first_few(int(i)
                         for i in np.unique(pan) if i != 0) or 'only void, 0'
        problem = (
            f"'{path}' holds none of the {len(absent)} segment ids listed "
            f'for it ({first_few(absent)}; it holds {held}): '
            'check that it is the PNG of this image (and the annotation file '
            'of this split) and that it encodes ids as COCO panoptic does, '
            'id = R + 256 G + 256^2 B')
        raise SampleContentError(f'Panoptic PNG {problem}.', [problem])
    if path not in _warned_pngs:
        _warned_pngs.add(path)
        print_log(
            f"Panoptic PNG '{path}' lacks {len(absent)} of the "
            f'{len(segments)} segment ids listed for it '
            f'({first_few(absent)}); those segments are left out.',
            logger='current',
            level=logging.WARNING)


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

    def load_instances(self,
                       results: dict,
                       segments: list,
                       listed: list = None) -> Tuple[List[dict], np.ndarray]:
        """Read ``results['seg_map_path']`` and add one instance per item of
        ``segments`` (``segments_info`` entries) found in it: ``gt_masks``
        (BitmapMasks, image size), ``gt_bboxes`` (tight boxes of the masks,
        x2/y2 exclusive), ``gt_bboxes_labels`` and ``gt_ignore_flags`` (all
        False). Returns those segments and their masks, an (N, H, W) uint8
        array.

        ``listed`` is every segment the annotation lists for the PNG
        (default: ``segments``), of which ``segments`` are the ones loaded
        (the training loader leaves crowd regions out). The PNG is checked
        against all of them: a listed segment without a pixel in the PNG is
        left out, with a warning (once per PNG); when none of them is there,
        the PNG is not this annotation's and :class:`SampleContentError`
        says so.
        """
        if listed is None:
            listed = segments
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
            # Most likely another image's PNG: a wrong file, which training
            # skips like a PNG holding none of its segments.
            problem = (f"'{path}' is {pan.shape[1]}x{pan.shape[0]} but its "
                       f"image '{results.get('img_path')}' is {w}x{h}")
            raise SampleContentError(f'Panoptic PNG {problem}.', [problem])

        masks = np.zeros((len(segments), h, w), dtype=np.uint8)
        held = {}  # segment id -> has a pixel in the PNG
        for i, segment in enumerate(segments):
            masks[i] = pan == segment['id']
            held[segment['id']] = bool(masks[i].any())
        # The segments not loaded (crowd regions, for training) count too:
        # a PNG holding only those is still this annotation's.
        for segment in listed:
            if segment['id'] not in held:
                held[segment['id']] = bool((pan == segment['id']).any())
        listed_present = np.array([held[s['id']] for s in listed], dtype=bool)
        if not listed_present.all():
            _check_absent_segments(path, pan, listed, listed_present)
        present = np.array([held[s['id']] for s in segments], dtype=bool)
        if not present.all():
            segments = [s for s, p in zip(segments, present) if p]
            masks = masks[present]
        results['gt_masks'] = BitmapMasks(masks, h, w)
        results['gt_bboxes'] = HorizontalBoxes.from_instance_masks(
            results['gt_masks'])
        results['gt_bboxes_labels'] = np.array(
            [s['category'] for s in segments], dtype=np.int64)
        results['gt_ignore_flags'] = np.zeros(len(segments), dtype=bool)
        return segments, masks

    def __repr__(self) -> str:
        return (f'{type(self).__name__}('
                f'num_thing_classes={self.num_thing_classes})')


@TRANSFORMS.register_module()
class LoadPanopticSegments(PanopticSegmentLoader):
    """Load every segment of a panoptic PNG, things and stuff alike, as an
    instance with a mask (mmdet's ``LoadPanopticAnnotations`` keeps only the
    non-crowd things).

    Added keys, one entry per ``results['segments_info']`` item, in order,
    leaving out the segments missing from the PNG (an empty mask is no
    prompt target, and ``GenerateSegmentPrompts`` would report it as lost
    in the resize; see :meth:`PanopticSegmentLoader.load_instances`):
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
        segments, masks = self.load_instances(results,
                                              results.get('segments_info', []))
        results['gt_is_thing'] = (
            results['gt_bboxes_labels'] < self.num_thing_classes)
        results['gt_segment_ids'] = np.array([s['id'] for s in segments],
                                             dtype=np.int64)
        results['gt_masks_rle'] = [encode_rle(m) for m in masks]
        return results
