import threading
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.structures import PixelData
from torch import Tensor

from .chunk_pool import MAX_CHUNK_WORKERS, num_chunk_workers, run_chunks
from .scored_panoptic_fusion_head import ScoredPanopticFusionHead

#: Per element size, the integer type twice as wide and the factor that
#: puts a value (>= 0) in both its halves.
_WIDE = {1: (torch.int16, 0x0101), 4: (torch.int64, 0x100000001)}

#: The chunk workers of the prediction running on this thread (see
#: ``HalfResolutionFusionHead.predict``).
_CALLER = threading.local()


def _half(n: int) -> int:
    return (n + 1) // 2


def _repeated(src: Tensor, h: int, w: int) -> Tensor:
    """``src`` (``[..., r, c]``) with each value repeated 2x2, cropped to
    ``[..., h, w]`` (``h <= 2r``, ``w <= 2c``), contiguous."""
    r, c = src.shape[-2:]
    lead = src.shape[:-2]
    wide = src[..., :, None, :, None].expand(*lead, r, 2, c, 2)
    return wide.reshape(*lead, 2 * r, 2 * c)[..., :h, :w].contiguous()


class _DirectSums:
    """Stands in for the exact head's summation windows, which reproduce
    the full-size mask's summation order: any order does here."""

    @staticmethod
    def sums(y0: int, x0: int, ones: Tensor, probs: Tensor) -> Tensor:
        return torch.stack([ones.sum(), probs.sum()])


@MODELS.register_module()
class HalfResolutionFusionHead(ScoredPanopticFusionHead):
    """An approximate post-processing: :class:`ScoredPanopticFusionHead`'s
    fusion at half the result's height and width, its masks and panoptic
    map then repeated 2x2 (nearest) to the result's size.

    Every step of the fusion (the upsampling of the kept masks, their
    sigmoids and thresholds, the panoptic claims, the mask scores) is a
    pass over result-size masks; at half the size each pass reads a
    quarter of the pixels, while the 2x2 repeat of the binary masks and
    the panoptic map is one copy. The logits are upsampled to half the
    padded input size (2x of the head's quarter-resolution logits),
    cropped to half the image and resized to half the result (sizes
    rounded up), so that a mask boundary moves by at most a pixel of the
    result.

    The results have the exact head's fields, dtypes and shapes: instance
    masks and the panoptic map at the result's size, boxes the tight boxes
    of the repeated masks, segment areas their pixels at the result's size,
    mask scores (the mean probability over a mask) taken at half size.

    Chosen with ``rap_sam.deploy.prepare(model, post='half')``; the
    default, ``post='exact'``, keeps :class:`ScoredPanopticFusionHead`.
    """

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples,
                rescale: bool = False,
                **kwargs) -> List[dict]:
        """:class:`ScoredPanopticFusionHead`'s ``predict``, approximate.

        On a CPU with several PyTorch threads, the operations outside the
        chunks run on one thread and the chunks on as many one-core
        workers as there were threads (or ``chunk_workers``): at half size
        each whole-image operation is small, and on a loaded machine a
        fork-join of all threads per operation costs more than the
        operation. The caller's thread count is set back on return.
        """
        threads = torch.get_num_threads()
        if mask_pred_results.device.type != 'cpu' or threads == 1:
            return super().predict(mask_cls_results, mask_pred_results,
                                   batch_data_samples, rescale, **kwargs)
        meta = batch_data_samples[0].metainfo
        size = meta['batch_input_shape']
        out = meta['ori_shape'][:2] if rescale else meta['img_shape'][:2]
        _CALLER.workers = self.chunk_workers or num_chunk_workers(
            mask_pred_results.device, MAX_CHUNK_WORKERS,
            self._worker_bytes((_half(size[0]), _half(size[1])),
                               (_half(out[0]), _half(out[1]))))
        torch.set_num_threads(1)
        try:
            return super().predict(mask_cls_results, mask_pred_results,
                                   batch_data_samples, rescale, **kwargs)
        finally:
            torch.set_num_threads(threads)
            _CALLER.workers = None

    def _workers(self, single_pair: bool) -> Optional[int]:
        # Any summation order does here, a lone pair's too.
        return getattr(_CALLER, 'workers', None) or self.chunk_workers

    def _predict_one(self, mask_cls: Tensor, mask_pred: Tensor, meta: dict,
                     size: Tuple[int, int], rescale: bool, panoptic_on: bool,
                     instance_on: bool) -> dict:
        img_h, img_w = meta['img_shape'][:2]
        h, w = meta['ori_shape'][:2] if rescale else (img_h, img_w)
        half_img = (_half(img_h), _half(img_w))
        half_out = (_half(h), _half(w))
        if rescale:
            # An odd image size's half-size crop has half a row (column)
            # of padding more: resized to the half result's size, the crop
            # would be stretched by it (1 % on a 128-px input). Resized at
            # the scale of the image to the result, the extra half row
            # lands beyond the result and is cropped off below.
            half_res = tuple(
                max(round(i2 * o / i), o2)
                for i2, o, i, o2 in zip(half_img, (h, w), (img_h,
                                                           img_w), half_out))
        else:
            half_res = half_img
        half_meta = dict(meta, img_shape=half_img, ori_shape=half_res)
        result = super()._predict_one(mask_cls, mask_pred, half_meta,
                                      (_half(size[0]), _half(size[1])),
                                      rescale, panoptic_on, instance_on)
        # (half-size source, full-size destination) pairs to repeat 2x2,
        # shared among the chunk workers, each on one core: the largest,
        # the panoptic map, first.
        repeats: List[Tuple[Tensor, Tensor]] = []
        # On a GPU each mask's repeat is a few kernel launches: there the
        # masks are repeated whole, in one copy.
        whole = self._vectorised_on(mask_pred.device)
        if 'pan_results' in result:
            pan = result['pan_results']
            half_map = pan.sem_seg[0]
            segments = self._full_areas(half_map, pan.segments, h, w)
            if whole:
                full_map = _repeated(pan.sem_seg, h, w)
            else:
                full_map = half_map.new_empty((1, h, w))
                repeats.append(
                    (half_map[:half_out[0], :half_out[1]], full_map[0]))
            result['pan_results'] = PixelData(sem_seg=full_map)
            result['pan_results'].set_metainfo(dict(segments=segments))
        if 'ins_results' in result:
            instances = result['ins_results']
            boxes = instances.bboxes.clone()
            boxes[:, 0::2].clamp_(max=half_out[1])
            boxes[:, 1::2].clamp_(max=half_out[0])
            # A mask only in the rows (columns) cropped off is empty.
            empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            boxes[empty] = 0
            small = instances.masks
            if whole:
                # Rows and columns past the half result are cropped off
                # here as below, and a half mask is empty off its box.
                masks = _repeated(small, h, w)
            else:
                shape = (len(small), h, w)
                # Only the boxes are written, into calloc'ed zeros on a
                # CPU: the pages of a small object's other rows are never
                # touched.
                masks = torch.from_numpy(np.zeros(shape, dtype=bool)) \
                    if small.device.type == 'cpu' else small.new_zeros(shape)
                for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
                    if x1 > x0:
                        repeats.append(
                            (small[i, y0:y1,
                                   x0:x1], masks[i, 2 * y0:min(2 * y1, h),
                                                 2 * x0:min(2 * x1, w)]))
            instances.masks = masks
            boxes *= 2
            boxes[:, 0::2].clamp_(max=w)
            boxes[:, 1::2].clamp_(max=h)
            instances.bboxes = boxes
        run_chunks(repeats,
                   lambda pair, buffers: self._repeat_2x2(*pair, buffers),
                   mask_pred.device, self._workers(False), 4 * h * w)
        return result

    def _band_stats(self, mask_pred, band, size, window, buf, resize=None):
        return super()._band_stats(mask_pred, band, size, _DirectSums, buf,
                                   resize)

    @classmethod
    def _repeat_2x2(cls, src: Tensor, dst: Tensor, buffers: dict) -> None:
        """Write ``src`` (``[r, c]``, bool or int32, values >= 0) with each
        value repeated 2x2 into ``dst`` (``[2r, 2c]``, or a row or column
        less: an odd size's crop).

        Each value is written once as a 16-bit (64-bit) integer holding it
        in both halves, which doubles the columns; then the rows are
        copied: two plain passes, where a broadcast copy of single values
        is several times slower. In place where ``dst`` can be viewed
        with the wider type, through a scratch buffer otherwise."""
        wide, both_halves = _WIDE[src.element_size()]
        r, c = src.shape
        try:
            assert tuple(dst.shape) == (2 * r, 2 * c)
            pairs = dst.view(wide)
        except (AssertionError, RuntimeError):
            pairs = None
        if pairs is None:
            pairs = cls._flat(buffers, f'pairs{src.dtype}', (4 * r * c, ),
                              dst).view(2 * r, 2 * c)
            cls._repeat_2x2(src, pairs, buffers)
            dst.copy_(pairs[:dst.shape[0], :dst.shape[1]])
            return
        pairs[0::2].copy_(src).mul_(both_halves)
        dst[1::2].copy_(dst[0::2])

    @staticmethod
    def _full_areas(half_map: Tensor, segments: List[dict], h: int,
                    w: int) -> List[dict]:
        """The segments (``area``: their pixels in ``half_map``) with their
        pixels once the map is cropped to ``ceil(h / 2) x ceil(w / 2)``,
        repeated 2x2 and cropped to ``h x w`` (four per pixel, less what an
        odd size crops off the last row and column); those left with none
        are dropped."""
        if not segments:
            return []
        ids = half_map.new_tensor([s['id'] for s in segments])

        def counts(part: Tensor) -> Tensor:
            if part.numel() == 0:
                return ids.new_zeros(len(ids), dtype=torch.long)
            return (part.reshape(-1, 1) == ids).sum(0)

        rows, cols = _half(h), _half(w)
        inside = half_map.new_tensor([s['area'] for s in segments],
                                     dtype=torch.long)
        inside -= counts(half_map[rows:]) + counts(half_map[:rows, cols:])
        kept = half_map[:rows, :cols]
        area = 4 * inside
        if h % 2:
            area -= 2 * counts(kept[-1])
        if w % 2:
            area -= 2 * counts(kept[:, -1])
        if h % 2 and w % 2:
            area += counts(kept[-1, -1:])
        full = []
        for segment, pixels in zip(segments, area.tolist()):
            if pixels > 0:
                full.append(dict(segment, area=pixels))
        return full
