from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads import MaskFormerFusionHead
from mmdet.registry import MODELS
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from ..utils.mask_rles import encode_mask_rles
from .bilinear_rows import BilinearRows
from .chunk_pool import run_chunks


class _Claims:
    """mmdet's panoptic claim of pixels, built one kept query at a time:
    ``argmax_k score_k * p_k`` per pixel (the first query on ties), the
    owner's ``p >= 0.5`` there, and each query's ``p >= 0.5`` area.

    The kept queries may be split into parts, each built by its own
    ``_Claims`` with its queries in ascending order, and the parts merged
    (:meth:`merge`, in any order): a tie goes to the lower query, so the
    result is ``argmax``'s whatever the split."""

    #: Below this many pixels a float sum of 1.0s is an exact count (and
    #: 5x faster than summing bools, which takes a casting loop).
    exact_float_count = 2**24

    def __init__(self,
                 scores: Tensor,
                 num_pixels: int,
                 vectorised: bool = False):
        self.scores = scores
        self.num_pixels = num_pixels
        # One argmax per chunk instead of a few operations per query.
        self.vectorised = vectorised
        self.best: Optional[Tensor] = None
        self.owner: Optional[Tensor] = None
        # The owner's p >= 0.5 as 1.0 / 0.0 (see foreground_mask).
        self.owner_foreground: Optional[Tensor] = None
        self.own_area: List[int] = [0] * len(scores)
        # Scratch tensors reused from chunk to chunk, per number of rows.
        self._scratch: Dict[int, Tuple[Tensor, Tensor]] = {}
        self._better: Optional[Tensor] = None

    def add(self, probs: Tensor, k: int) -> None:
        """Kept queries ``k .. k + m - 1``'s probabilities, ``[m, H * W]``,
        after any lower ones of this part (products, thresholds and areas
        for all ``m`` at once: fewer, larger operations)."""
        m = len(probs)
        if m not in self._scratch:
            self._scratch[m] = (torch.empty_like(probs),
                                torch.empty_like(probs))
        weighted, foreground = self._scratch[m]
        # The same float products as mmdet's scores.view(-1, 1, 1) * masks.
        torch.mul(self.scores[k:k + m, None], probs, out=weighted)
        torch.ge(probs, 0.5, out=foreground)
        self.own_area[k:k + m] = self._count(foreground)
        if self.vectorised:
            self._add_at_once(weighted, foreground, k)
            return
        for i in range(m):
            if self.best is None:
                self.best = weighted[i].clone()
                self.owner = torch.full((self.num_pixels, ),
                                        k + i,
                                        dtype=torch.long,
                                        device=probs.device)
                self.owner_foreground = foreground[i].clone()
                self._better = torch.empty_like(self.best, dtype=torch.bool)
                continue
            better = torch.gt(weighted[i], self.best, out=self._better)
            torch.maximum(self.best, weighted[i], out=self.best)
            self.owner.masked_fill_(better, k + i)
            torch.where(
                better,
                foreground[i],
                self.owner_foreground,
                out=self.owner_foreground)

    def _add_at_once(self, weighted: Tensor, foreground: Tensor,
                     k: int) -> None:
        """:meth:`add`'s claims with one ``max`` over the chunk (its first
        query on ties, as ``argmax``); lower queries keep their ties."""
        best, index = weighted.max(0)
        owner_foreground = foreground.gather(0, index[None])[0]
        owner = index.add_(k)
        if self.best is None:
            self.best, self.owner = best, owner
            self.owner_foreground = owner_foreground
            return
        better = best > self.best
        torch.maximum(self.best, best, out=self.best)
        self.owner = torch.where(better, owner, self.owner)
        self.owner_foreground = torch.where(better, owner_foreground,
                                            self.owner_foreground)

    def merge(self, other: '_Claims') -> None:
        """Take in another part's claims (other kept queries)."""
        self.own_area = [
            max(a, b) for a, b in zip(self.own_area, other.own_area)
        ]
        if other.best is None:
            return
        if self.best is None:
            self.best, self.owner = other.best, other.owner
            self.owner_foreground = other.owner_foreground
            return
        better = (other.best > self.best) | ((other.best == self.best) &
                                             (other.owner < self.owner))
        torch.maximum(self.best, other.best, out=self.best)
        self.owner = torch.where(better, other.owner, self.owner)
        self.owner_foreground = torch.where(better, other.owner_foreground,
                                            self.owner_foreground)

    def foreground_mask(self) -> Tensor:
        """The owner's ``p >= 0.5`` per pixel, as bools."""
        return self.owner_foreground.bool()

    def _count(self, ones: Tensor) -> List[int]:
        """The number of 1.0s in each row of ``ones``."""
        if ones.shape[1] < self.exact_float_count:
            return [int(n) for n in ones.sum(1).tolist()]
        return ones.count_nonzero(1).tolist()


class _SumWindow:
    """The sums over a full-size mask of a mask that is zero outside a band
    of rows, in the order PyTorch sums the full row, reading only an
    aligned window around the band.

    PyTorch sums a contiguous row (one row per thread when there are
    several) as ``Vectorized`` lanes, four at a time, in a cascade whose
    partial sums move up a level every 16, 16**2 and 16**3 steps (16 for
    any row under 2**23 elements). Zeros add nothing to any partial sum,
    so a window starting at a multiple of ``16**3 * 4`` vectors, all zeros
    before it, and ending at such a multiple (or the row's end), summed as
    a row of its own, goes through the same additions in the same order.
    """

    #: 16**3 steps of four 16-lane vectors: a multiple of the cascade's
    #: largest block for 16- and 8-lane vectors (AVX-512, AVX2, NEON).
    alignment = 16**3 * 4 * 16
    #: Rows longer than this use another cascade (``level_power`` above 4).
    max_elements = 2**23

    def __init__(self, like: Tensor, h: int, w: int):
        self.width = w
        self.numel = h * w
        # Pixel counts (1.0s) and masked probabilities, zero outside the
        # current band.
        self.zeros = like.new_zeros((2, self.numel))

    def sums(self, y0: int, x0: int, ones: Tensor, probs: Tensor) -> Tensor:
        """Pixel count and probability sum of a mask that is ``ones`` and
        ``probs`` (``[rows, columns]``) from row ``y0`` and column ``x0``
        on and zero elsewhere, as the full-size ``[2, h * w]`` row sums
        would be."""
        y1, x1 = y0 + ones.shape[0], x0 + ones.shape[1]
        start = y0 * self.width + x0
        end = (y1 - 1) * self.width + x1
        a = start // self.alignment * self.alignment
        b = min(-(-end // self.alignment) * self.alignment, self.numel)
        window = self.zeros.view(2, -1, self.width)[:, y0:y1, x0:x1]
        window[0].copy_(ones)
        window[1].copy_(probs)
        both = self.zeros[:, a:b].sum(1)
        window.zero_()
        return both


@MODELS.register_module()
class ScoredPanopticFusionHead(MaskFormerFusionHead):
    """mmdet's MaskFormer fusion, taking mask logits at feature resolution,
    plus the score and class of every panoptic segment
    (``pred_panoptic_seg.segments``), which the demo and API report.

    The results are exactly mmdet's (upsample to the padded input size,
    crop to the image, resize to the original size, then
    ``MaskFormerFusionHead``'s panoptic and instance post-processing),
    computed with less work:

    - only the queries the post-processing reads are resized: for the
      panoptic result those that pass the score filter, for the instance
      result those behind the top-``max_per_image`` thing (query, class)
      pairs, each query once however many of its classes made the cut
      (mmdet resizes all queries, then copies a full-size mask per pair);
    - they are resized a few at a time, and each chunk's sigmoids, binary
      masks, mask scores and boxes are taken while it is in cache; the
      panoptic claim (an argmax over the kept queries) is accumulated query
      by query, so no stack of full-size masks is ever held;
    - on a CPU the chunks are shared among as many Python threads as
      PyTorch has intra-op threads, each running its operations on one
      core (:mod:`.chunk_pool`), rather than every operation forking and
      joining all cores: the same operations, so the same results, without
      a barrier per operation (which a loaded machine turns into waiting);
      each thread claims pixels for its own kept queries and the parts are
      merged (ties to the lower query, as ``argmax``);
    - the panoptic painting and the segment table are computed for all
      segments at once (bincount, gather) instead of a loop of full-image
      passes per segment;
    - a resize to the same size (the identity) is skipped;
    - an instance query outside the panoptic claim whose mask spans rows
      and columns that make at most ``band_fraction`` of the image is
      upsampled, thresholded and summed on those only (:meth:`_bands`: exact
      where the upsampling's scale is a power of two; a resize to another
      ``ori_shape`` is computed from the top left corner to the window's
      far corner), its mask written into calloc'ed zeros.

    Masks are resized with the same calls on the same values, so every
    pixel is the same number; reductions keep mmdet's tensor shapes where
    the summation order depends on them (``tests/test_models/
    test_fusion_head.py`` checks masks, boxes, labels and the panoptic
    result bit for bit, and mask scores to an ulp: PyTorch's sum kernel
    also orders by the CPU's vector width, so on AVX-512 a score can
    differ from mmdet's in its last bit).

    A segment's score is that of the query that painted it (the best one,
    for merged stuff).
    """

    #: Masks resized at a time: two full-size 800x1344 masks per buffer
    #: keep a chunk's buffers within a 32 MiB L3 cache (measured on 2
    #: cores, 97 masks: 0.47-0.49 s at 2, 0.55-0.63 s at 8).
    chunk_size = 2
    #: Threads the chunks are shared among (:mod:`.chunk_pool`), each
    #: running its operations single-threaded; None: one per PyTorch
    #: intra-op thread (CPU only).
    chunk_workers: Optional[int] = None
    #: Whether the work is laid out for a GPU, which waits on kernel
    #: launches (with the CPU layout an image at 800x1333 launched about
    #: 2,000, most of them here): chunks of ``device_chunk_size`` queries,
    #: each chunk's panoptic claims taken with one ``max``, its instance
    #: masks copied with one indexed copy. None: on devices other than the
    #: CPU.
    vectorised: Optional[bool] = None
    #: Queries per chunk in the vectorised layout (32 full-size 800x1344
    #: masks: about 0.6 GB of buffers).
    device_chunk_size = 32

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples,
                rescale: bool = False,
                **kwargs) -> List[dict]:
        """
        Args:
            mask_cls_results (Tensor): ``[B, N, K + 1]`` class logits.
            mask_pred_results (Tensor): ``[B, N, h, w]`` mask logits at any
                resolution (resized to the padded input size first, as
                mmdet's heads do before fusion).
            batch_data_samples (list): Samples with ``batch_input_shape``,
                ``img_shape`` and ``ori_shape``.
            rescale (bool): Results at ``ori_shape`` rather than
                ``img_shape``.

        Returns:
            list[dict]: ``pan_results`` (:obj:`PixelData` with ``segments``)
            and / or ``ins_results`` (:obj:`InstanceData`) per image.
        """
        panoptic_on = self.test_cfg.get('panoptic_on', True)
        semantic_on = self.test_cfg.get('semantic_on', False)
        instance_on = self.test_cfg.get('instance_on', False)
        assert not semantic_on, 'semantic segmentation results are not ' \
            'supported yet.'
        size = tuple(batch_data_samples[0].metainfo['batch_input_shape'])
        return [
            self._predict_one(mask_cls, mask_pred, sample.metainfo, size,
                              rescale, panoptic_on, instance_on)
            for mask_cls, mask_pred, sample in zip(
                mask_cls_results, mask_pred_results, batch_data_samples)
        ]

    def _predict_one(self, mask_cls: Tensor, mask_pred: Tensor, meta: dict,
                     size: Tuple[int, int], rescale: bool, panoptic_on: bool,
                     instance_on: bool) -> dict:
        device = mask_cls.device
        if panoptic_on:
            scores, keep = self._panoptic_queries(mask_cls)
            kept = keep.nonzero()[:, 0].tolist()
        else:
            kept = []
        selection = self._instance_selection(mask_cls) if instance_on else None
        unique: List[int] = []
        # The pairs (rows of the instance result) each unique query fills.
        pair_rows: List[List[int]] = []
        if selection is not None:
            unique_t, inverse = torch.unique(selection[2], return_inverse=True)
            unique = unique_t.tolist()
            pair_rows = [[] for _ in unique]
            for pair, u in enumerate(inverse.tolist()):
                pair_rows[u].append(pair)
        unique_row: Dict[int, int] = {q: i for i, q in enumerate(unique)}
        kept_set = set(kept)

        img_h, img_w = meta['img_shape'][:2]
        h, w = meta['ori_shape'][:2] if rescale else (img_h, img_w)
        vectorised = self._vectorised_on(device)
        claims = _Claims(scores[keep], h *
                         w, vectorised) if panoptic_on else None
        mask_sums = mask_pred.new_empty(len(unique))
        counts = mask_pred.new_empty(len(unique))
        bboxes = torch.empty((len(unique), 4), device=device)
        # mmdet sums the instance masks as one [pairs, H * W] tensor: each
        # row on its own, except for a single pair, which a multi-threaded
        # reduction splits (another summation order). Chunks of >= 2 rows
        # reproduce the former, a lone row the latter.
        single_pair = selection is not None and len(selection[2]) == 1
        # Instance queries outside the panoptic claim whose masks span few
        # rows: those rows only (the panoptic claim reads every pixel).
        plan = None if single_pair else self._band_plan(
            mask_pred, size, meta, rescale)
        bands = self._bands(mask_pred,
                            [q for q in unique if q not in kept_set], meta,
                            plan)
        # Written in place, one row per pair: no full-size copy at the end.
        shape = (len(selection[2]) if selection is not None else 0, h, w)
        if bands:
            # Zeros from calloc: the pages of a band mask's other rows are
            # never written (nor faulted in) here.
            binary = torch.from_numpy(np.zeros(shape, dtype=bool))
        else:
            binary = torch.empty(shape, dtype=torch.bool, device=device)
        resize = plan[1] if bands else None

        def band_work(item: Tuple[int, Tuple[int, ...]],
                      buffers: dict) -> None:
            q, band = item
            if 'window' not in buffers:
                buffers['window'] = _SumWindow(mask_pred, h, w)
            u = unique_row[q]
            positive, sums, pixels, boxes = self._band_stats(
                mask_pred[q], band, size, buffers['window'], buffers, resize)
            if positive is not None:
                y0, y1, x0, x1 = band[2:4] + band[6:]
                for pair in pair_rows[u]:
                    binary[pair, y0:y1, x0:x1].copy_(positive)
            mask_sums[u] = sums
            counts[u] = pixels
            bboxes[u] = boxes

        run_chunks(
            list(bands.items()), band_work, device, self._workers(single_pair),
            self._worker_bytes(size, (h, w)))

        kept_position = {q: k for k, q in enumerate(kept)}
        # One part of the claims per worker (see _Claims), merged below.
        parts: List[_Claims] = []

        def chunk_work(chunk: List[int], buffers: dict) -> None:
            # Full-size temporaries are reused from chunk to chunk.
            buf = buffers.setdefault(len(chunk), {})
            logits = self._resize(
                self._rows(mask_pred, chunk), size, meta, rescale, buf)
            probs = self._sigmoid(logits, buf)
            kept_rows = [i for i, q in enumerate(chunk) if q in kept_set]
            if kept_rows:
                part = buffers.get('claims')
                if part is None:
                    part = buffers['claims'] = _Claims(claims.scores, h * w,
                                                       vectorised)
                    parts.append(part)
                # A chunk's kept queries follow each other in kept order.
                part.add(
                    self._rows(probs.flatten(1), kept_rows),
                    kept_position[chunk[kept_rows[0]]])
            rows = [i for i, q in enumerate(chunk) if q in unique_row]
            if rows:
                positive, sums, pixels, boxes = self._mask_stats(
                    logits, probs, buf, single_pair)
                if len(rows) < len(chunk):
                    sums, pixels, boxes = sums[rows], pixels[rows], boxes[rows]
                dst = [unique_row[chunk[i]] for i in rows]
                copies = [(pair, i) for i in rows
                          for pair in pair_rows[unique_row[chunk[i]]]]
                if vectorised and copies:
                    pairs, sources = zip(*copies)
                    binary.index_copy_(0, torch.tensor(pairs, device=device),
                                       positive[list(sources)])
                else:
                    for pair, i in copies:
                        binary[pair].copy_(positive[i])
                mask_sums[dst] = sums
                counts[dst] = pixels
                bboxes[dst] = boxes

        # Workers take chunks in order, so each part's kept queries come in
        # ascending order.
        run_chunks(
            self._chunks(
                sorted(kept_set | (set(unique_row) - set(bands))), single_pair,
                vectorised), chunk_work, device, self._workers(single_pair),
            self._worker_bytes(size, (h, w)))
        for part in parts:
            claims.merge(part)

        result = dict()
        if panoptic_on:
            result['pan_results'] = self._panoptic(mask_cls, claims, h, w)
        if instance_on:
            scores, labels, _ = selection
            mask_scores = mask_sums / (counts + 1e-6)
            instances = InstanceData()
            instances.bboxes = bboxes[inverse]
            instances.labels = labels
            instances.scores = scores * mask_scores[inverse]
            instances.masks = binary
            # Which query each instance is (a track, in a video).
            instances.query_indices = selection[2]
            result['ins_results'] = instances
        return result

    def _sigmoid(self, logits: Tensor, buf: dict) -> Tensor:
        """A chunk's probabilities, written where :meth:`_mask_stats` sums
        them (the second half of its ``stats`` buffer)."""
        stats = self._buffer(buf, 'stats', (2, ) + tuple(logits.shape), logits)
        return torch.sigmoid(logits, out=stats[1])

    def _mask_stats(self, logits: Tensor, probs: Tensor, buf: dict,
                    single_pair: bool) -> Tuple[Tensor, ...]:
        """A chunk's binary masks, mask-score sums, pixel counts and boxes,
        from its logits and probabilities from :meth:`_sigmoid` (which
        are overwritten)."""
        # Whole-chunk operations (few, large ones: each is a fork-join of
        # the thread pool, which costs more than the work on a loaded
        # machine).
        # mmdet's sigmoid * (logits > 0).float(), in place (the float mask
        # made directly: bool operands take PyTorch's slow casting loops,
        # 10-30x slower here). The bool mask is a copy of the float one: a
        # comparison writing bools is 5x slower than a float -> bool copy.
        stats = self._buffer(buf, 'stats', (2, ) + tuple(logits.shape), logits)
        assert probs.data_ptr() == stats[1].data_ptr()
        ones = torch.gt(logits, 0, out=stats[0])
        positive = self._buffer(buf, 'positive', logits.shape, logits,
                                torch.bool).copy_(ones)
        masked = probs.mul_(ones)
        n = len(logits)
        if single_pair:
            # mmdet's lone row, which its reduction splits between threads.
            sums = masked.flatten(1).sum(1)
            pixels = ones.flatten(1).sum(1)
        else:
            # Pixel counts and mask sums in one reduction: each of >= 2
            # rows is summed on its own, in mmdet's order (sums of 1.0s
            # are exact integers below 2^24 in any order).
            both = stats.view(2 * n, -1).sum(1)
            pixels, sums = both[:n], both[n:]
        return positive, sums, pixels, self._boxes(positive)

    def _workers(self, single_pair: bool) -> Optional[int]:
        """Chunk workers for :meth:`predict`: a lone pair's sum is split
        between PyTorch's threads as mmdet's is, so it stays in the
        caller."""
        return 1 if single_pair else self.chunk_workers

    def _worker_bytes(self, size: Tuple[int, int], out: Tuple[int,
                                                              int]) -> int:
        """About the scratch memory of one chunk worker: per mask of a
        chunk (one more for a chunk of three) the padded-size upsampling
        and, at the result's size, the resize, sigmoid, binary mask, bool
        copy and claim scratch; and its part of the panoptic claims."""
        padded, pixels = size[0] * size[1], out[0] * out[1]
        # Plus a part of the panoptic claims (_Claims: best, owner, ...).
        return (self.chunk_size + 1) * (4 * padded + 21 * pixels) + \
            17 * pixels

    def _vectorised_on(self, device: torch.device) -> bool:
        if self.vectorised is None:
            return device.type != 'cpu'
        return self.vectorised

    def _chunks(self,
                queries: List[int],
                single: bool,
                vectorised: bool = False) -> List[List[int]]:
        """Groups of ``chunk_size`` (``vectorised``: ``device_chunk_size``)
        queries in order, none of one row unless there is one query in all
        (``single``: each query alone)."""
        if single:
            return [[q] for q in queries]
        size = max(self.device_chunk_size if vectorised else self.chunk_size,
                   2)
        chunks = [queries[i:i + size] for i in range(0, len(queries), size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            last = chunks.pop()
            chunks[-1] = chunks[-1] + last
        return chunks

    # ------------------------------------------------------------------
    # videos: every query's masks first, the selection once classes are known
    # ------------------------------------------------------------------
    def predict_query_masks(self, mask_pred: Tensor, meta: dict,
                            size: Tuple[int,
                                        int], rescale: bool) -> InstanceData:
        """Every query's instance mask on one image, as the instance result
        would hold it, before the class scores are known (a video's are
        averaged over its clips): ``masks`` (COCO RLEs, encoded as soon as
        they are made), ``bboxes`` and ``mask_scores``, one per query.
        :meth:`gather_instances` makes the instance result from them.

        Where the selection can hold a single query (``max_per_image`` at
        most the number of thing classes, or stuff classes), its mask score
        is summed as :meth:`predict` sums it then, in another order:
        ``alone_mask_scores`` (one query with several classes) and
        ``single_mask_scores`` (one pair)."""
        num = mask_pred.shape[0]
        alone = self._single_query_possible()
        masks: List[dict] = []
        bboxes = torch.empty((num, 4), device=mask_pred.device)
        sums, counts = mask_pred.new_empty(num), mask_pred.new_empty(num)
        alone_sums = mask_pred.new_empty(num) if alone else None
        single_sums = mask_pred.new_empty(num) if alone else None
        vectorised = self._vectorised_on(mask_pred.device)
        chunks = self._chunks(list(range(num)), False, vectorised)
        chunk_masks: List[list] = [[] for _ in chunks]

        def chunk_work(item: Tuple[int, List[int]], buffers: dict) -> None:
            index, chunk = item
            buf = buffers.setdefault(len(chunk), {})
            logits = self._resize(
                self._rows(mask_pred, chunk), size, meta, rescale, buf)
            probs = self._sigmoid(logits, buf)
            positive, chunk_sums, pixels, boxes = self._mask_stats(
                logits, probs, buf, False)
            chunk_masks[index] = encode_mask_rles(positive, vectorised)
            sums[chunk] = chunk_sums
            counts[chunk] = pixels
            bboxes[chunk] = boxes

        run_chunks(
            list(enumerate(chunks)), chunk_work, mask_pred.device,
            self.chunk_workers,
            self._worker_bytes(size,
                               meta['ori_shape'][:2] if rescale else size))
        for chunk_rles in chunk_masks:
            masks.extend(chunk_rles)
        buffers: Dict[int, dict] = {}
        if alone:
            # predict() resizes a lone query by itself: another layout,
            # another sigmoid kernel, another summation order.
            buf = buffers.setdefault(1, {})
            for q in range(num):
                logits = self._resize(mask_pred[[q]], size, meta, rescale, buf)
                probs = torch.sigmoid(
                    logits,
                    out=self._buffer(buf, 'probs', logits.shape, logits))
                ones = (logits > 0).float()
                alone_sums[q] = (probs * ones).expand(2, -1,
                                                      -1).flatten(1).sum(1)[0]
                single_sums[q] = probs.mul_(ones).flatten(1).sum(1)[0]
        instances = InstanceData()
        instances.masks = masks
        instances.bboxes = bboxes
        instances.mask_scores = sums / (counts + 1e-6)
        if alone:
            instances.alone_mask_scores = alone_sums / (counts + 1e-6)
            instances.single_mask_scores = single_sums / (counts + 1e-6)
        return instances

    def select_instances(self, mask_cls: Tensor) -> InstanceData:
        """The instance result's rows for class scores ``[N, K + 1]``:
        ``scores`` (of the class), ``labels`` and ``query_indices``."""
        scores, labels, queries = self._instance_selection(mask_cls)
        return InstanceData(
            scores=scores, labels=labels, query_indices=queries)

    def gather_instances(self, selection: InstanceData,
                         query_masks: InstanceData) -> InstanceData:
        """:meth:`predict`'s instance result (masks as COCO RLEs) from
        :meth:`select_instances` and :meth:`predict_query_masks`."""
        queries = selection.query_indices
        mask_scores = query_masks.mask_scores
        if len(queries) == 1 and 'single_mask_scores' in query_masks:
            mask_scores = query_masks.single_mask_scores
        elif len(queries) > 1 and len(queries.unique()) == 1 and \
                'alone_mask_scores' in query_masks:
            mask_scores = query_masks.alone_mask_scores
        instances = InstanceData()
        instances.bboxes = query_masks.bboxes[queries]
        instances.labels = selection.labels
        instances.scores = selection.scores * mask_scores[queries]
        # A dict per row: consumers decode an RLE's counts in place.
        instances.masks = [dict(query_masks.masks[q]) for q in queries]
        instances.query_indices = queries
        return instances

    def _single_query_possible(self) -> bool:
        """Whether an instance selection can hold one query only."""
        max_per_image = self.test_cfg.get('max_per_image', 100)
        return max_per_image <= self.num_things_classes or \
            self.num_things_classes < self.num_classes

    # ------------------------------------------------------------------
    # bands: instance masks computed on the window of rows and columns
    # they span
    # ------------------------------------------------------------------
    #: An instance query is processed on the rows and columns it spans only
    #: when they make at most this fraction of the image (else the
    #: full-size chunks do it).
    band_fraction = 0.5
    #: Sigmoids are taken in pieces of this many elements (a multiple of
    #: 32, under PyTorch's 32768-element grain): one thread each, with no
    #: scalar tail, so every pixel gets the vectorised kernel, as in
    #: mmdet's full-size call (the scalar one differs in the last bit).
    sigmoid_piece = 32736

    def _bands(
        self, mask_pred: Tensor, queries: List[int], meta: dict,
        plan: Optional[Tuple[int, Optional[Tuple[BilinearRows, BilinearRows]]]]
    ) -> Dict[int, Tuple[int, ...]]:
        """The instance queries to compute on a window of rows and columns
        under ``plan`` (:meth:`_band_plan`; None: none):
        ``{query: (c0, c1, y0, y1, d0, d1, x0, x1)}``, the logit rows
        ``c0..c1`` and columns ``d0..d1`` whose upsampling gives the
        result's rows ``y0:y1`` and columns ``x0:x1``, outside which the
        mask is empty (``y0 == y1``: empty everywhere).

        A pixel is in a mask when its resized logit is > 0; bilinear
        weights are >= 0, so a pixel interpolated from pixels <= 0 is <= 0
        and only the rows and columns next to positive logit rows and
        columns can hold the mask. Upsampling a crop of the logits with
        one more row and column on each side gives those pixels bit for bit
        when the scale is a power of two (its source coordinates,
        ``(y + 0.5) / r - 0.5``, are exact, so a crop's differ from the
        full call's by a whole number of rows) and the crop's output has
        over 128 rows and columns together (PyTorch's generic kernel, as
        the full call's; :meth:`_crop_upsample` adds columns where needed).

        A resize to another ``ori_shape`` is not translation invariant (its
        source rows are rounded products): there the window comes from a
        resize of the image's top left corner (:meth:`_band_resize`), and
        ``c0..c1``, ``d0..d1`` are the logit rows and columns of the image
        pixels that window reads."""
        if not queries or plan is None:
            return {}
        ratio, resize = plan
        h_l, w_l = mask_pred.shape[-2:]
        img_h, img_w = meta['img_shape'][:2]
        rows_resize, cols_resize = resize or (None, None)
        out_h, out_w = (rows_resize.out_size,
                        cols_resize.out_size) if resize else (img_h, img_w)
        # Rows and columns with a positive logit, [n, h_l] and [n, w_l]
        # (row and column maxima: no copy of the selected masks, no bool
        # pass).
        rows = mask_pred.amax(-1)[queries] > 0
        cols = mask_pred.amax(-2)[queries] > 0
        found = rows.any(1).tolist()
        first = rows.byte().argmax(1).tolist()
        last = (h_l - 1 - rows.flip(1).byte().argmax(1)).tolist()
        first_col = cols.byte().argmax(1).tolist()
        last_col = (w_l - 1 - cols.flip(1).byte().argmax(1)).tolist()
        empty = (0, -1, 0, 0, 0, -1, 0, 0)
        bands = {}
        for i, q in enumerate(queries):
            if not found[i]:
                bands[q] = empty
                continue
            row_band = self._axis_band(first[i], last[i], h_l, ratio, img_h,
                                       rows_resize)
            col_band = self._axis_band(first_col[i], last_col[i], w_l, ratio,
                                       img_w, cols_resize)
            if row_band is None or col_band is None:
                bands[q] = empty
            elif (row_band[3] - row_band[2]) * (col_band[3] - col_band[2]) \
                    <= self.band_fraction * out_h * out_w:
                bands[q] = row_band + col_band
        return bands

    @staticmethod
    def _axis_band(
            first: int, last: int, n_l: int, ratio: int, n_img: int,
            resize: Optional[BilinearRows]
    ) -> Optional[Tuple[int, int, int, int]]:
        """Along one axis, a mask whose logits are positive at ``first``
        .. ``last`` only: ``(c0, c1, y0, y1)``, the logit indices that give
        the result's indices ``y0:y1`` outside which the mask is empty
        (None: empty everywhere). See :meth:`_bands`."""
        if ratio == 1:
            c0, c1, y0, y1 = first, last, first, last + 1
        else:
            c0, c1 = max(first - 1, 0), min(last + 1, n_l - 1)
            y0, y1 = ratio * c0, ratio * (c1 + 1)
        y1 = min(y1, n_img)
        if resize is not None and y1 > y0:
            # The image's y0:y1 hold the mask: the result's indices that
            # read them, and the logit indices of all those read.
            y0, y1 = resize.reading(y0, y1)
            if y1 > y0:
                q0, q1 = resize.read_by(y0, y1)
                c0, c1 = (q0,
                          q1 - 1) if ratio == 1 else (max(q0 // ratio - 1, 0),
                                                      min((q1 - 1) // ratio +
                                                          1, n_l - 1))
        return (c0, c1, y0, y1) if y1 > y0 else None

    @staticmethod
    def _widen(d0: int, d1: int, n: int, length: int) -> Tuple[int, int]:
        """``d0..d1`` grown to ``length`` indices within ``0..n - 1`` (or
        all of them), the end first."""
        missing = length - (d1 - d0 + 1)
        if missing > 0:
            d1 = min(d1 + missing, n - 1)
            d0 = max(d0 - (length - (d1 - d0 + 1)), 0)
        return d0, d1

    def _band_plan(
        self, mask_pred: Tensor, size: Tuple[int,
                                             int], meta: dict, rescale: bool
    ) -> Optional[Tuple[int, Optional[Tuple[BilinearRows, BilinearRows]]]]:
        """Where bands give the full-size path's pixels bit for bit (see
        :meth:`_bands`): the upsampling's scale ``r`` (1: none) and the
        rows and columns of the resize to ``ori_shape`` (None: none), else
        None. Bands need a CPU tensor, a power-of-two scale and outputs
        over 128 pixels wide; a resize to ``ori_shape`` also needs an
        output whose height and width add up to over 128 (PyTorch's
        generic kernel, the one :meth:`_band_resize` reproduces) and
        scales that ``scales_h`` and ``scales_w`` arguments give
        exactly."""
        if mask_pred.device.type != 'cpu':
            return None
        h_l, w_l = mask_pred.shape[-2:]
        pad_h, pad_w = size
        img_h, img_w = meta['img_shape'][:2]
        out_h, out_w = img_h, img_w
        resize = None
        if rescale and tuple(meta['ori_shape'][:2]) != (img_h, img_w):
            out_h, out_w = meta['ori_shape'][:2]
            if out_h + out_w <= 128:
                return None
            resize = (BilinearRows(img_h, out_h), BilinearRows(img_w, out_w))
            if any(not axis.identity and axis.scale_argument() is None
                   for axis in resize):
                return None
        if out_h * out_w > _SumWindow.max_elements:
            return None
        if (h_l, w_l) == (pad_h, pad_w):
            return 1, resize
        ratio = pad_h // h_l
        if ratio * h_l != pad_h or ratio * w_l != pad_w or \
                ratio & (ratio - 1) or pad_w <= 128:
            return None
        return ratio, resize

    def _crop_upsample(self, mask_pred: Tensor, c0: int, c1: int, d0: int,
                       d1: int, size: Tuple[int, int],
                       buf: dict) -> Tuple[Tensor, int, int]:
        """Rows ``c0..c1`` and columns ``d0..d1`` (or more columns) of one
        query's ``[h, w]`` logits upsampled to ``size``'s scale: that part
        of the padded-size logits, and the padded-size row and column it
        starts at."""
        if tuple(mask_pred.shape[-2:]) == tuple(size):
            return mask_pred[c0:c1 + 1, d0:d1 + 1], c0, d0
        ratio = size[0] // mask_pred.shape[-2]
        # PyTorch's generic kernel, as in the full call: over 128 output
        # rows and columns together (see _band_plan).
        d0, d1 = self._widen(d0, d1, mask_pred.shape[-1],
                             -(-129 // ratio) - (c1 - c0 + 1))
        shape = (1, 1, ratio * (c1 - c0 + 1), ratio * (d1 - d0 + 1))
        out = self._flat(buf, 'upsampled', shape, mask_pred)
        up = torch._C._nn.upsample_bilinear2d(
            mask_pred[None, None, c0:c1 + 1, d0:d1 + 1],
            shape[2:],
            False,
            None,
            None,
            out=out)
        return up[0, 0], ratio * c0, ratio * d0

    @staticmethod
    def _prefix(axis: BilinearRows, y0: int, y1: int,
                length: int) -> Tuple[int, int, int, int, int]:
        """Along one axis of :meth:`_band_resize`: ``(start, n_in, n_out,
        q0, q1)``, a resize of the input's ``start:n_in`` to the output's
        ``start:n_out`` whose ``y0:y1`` are the full resize's (at least
        ``length`` long, within the output), from the input's exact
        ``q0:q1``."""
        if axis.identity:
            start = max(min(y0, y1 - length), 0)
            stop = min(max(y1, start + length), axis.out_size)
            return start, stop, stop, y0, y1
        q0, q1 = axis.read_by(y0, y1)
        n_in, n_out = q1, min(max(y1, length), axis.out_size)
        if n_in == n_out:
            # aten copies when the sizes are equal, whatever the scale:
            # one more index (finite, never read by y0:y1).
            if n_in < axis.in_size:
                n_in += 1
            else:
                n_out += 1
        return 0, n_in, n_out, q0, q1

    def _band_resize(self, mask_pred: Tensor, band: Tuple[int, ...],
                     size: Tuple[int, int], resize: Tuple[BilinearRows,
                                                          BilinearRows],
                     buf: dict) -> Tensor:
        """Rows ``y0:y1`` and columns ``x0:x1`` of one query's ``[h, w]``
        logits resized to the padded size, cropped to the image and
        resized to ``ori_shape``, bit for bit the full-size path's.

        aten's source row of output row ``y`` is a rounded product of
        ``y + 0.5`` (columns alike): a resize of a crop would round other
        products. So the resize starts at the top left corner, as the full
        one does: the image's top left corner to the result's, down to
        ``y1`` and right to ``x1`` (or more: at least 129 rows and columns
        together, the generic kernel the full resize takes), with the full
        resize's scales passed as ``scales_h`` and ``scales_w`` (from the
        sizes aten would compute others). Only the image pixels that
        window reads are computed; the others, read by the result's pixels
        outside the window, hold anything finite. A resize to the same
        height (or width) copies rows (columns): there the crop starts at
        the window."""
        c0, c1, y0, y1, d0, d1, x0, x1 = band
        rows, cols = resize
        col_plan = self._prefix(cols, x0, x1, 0)
        row_plan = self._prefix(rows, y0, y1,
                                129 - (col_plan[2] - col_plan[0]))
        if row_plan[2] - row_plan[0] + col_plan[2] - col_plan[0] < 129:
            col_plan = self._prefix(cols, x0, x1,
                                    129 - (row_plan[2] - row_plan[0]))
        r_start, r_in, r_out, q0, q1 = row_plan
        c_start, c_in, c_out, p0, p1 = col_plan
        image = buf.get('image')
        if image is None or image.numel() < r_in * c_in:
            # Zeros once: the pixels no band writes stay finite.
            image = buf['image'] = mask_pred.new_zeros(r_in * c_in)
        image = image[:r_in * c_in].view(1, 1, r_in, c_in)
        up, top, left = self._crop_upsample(mask_pred, c0, c1, d0, d1, size,
                                            buf)
        image[0, 0, q0:q1, p0:p1].copy_(up[q0 - top:q1 - top,
                                           p0 - left:p1 - left])
        out = self._flat(buf, 'resized',
                         (1, 1, r_out - r_start, c_out - c_start), mask_pred)
        torch._C._nn.upsample_bilinear2d(
            image[:, :, r_start:, c_start:],
            out.shape[2:],
            False,
            rows.scale_argument(),
            cols.scale_argument(),
            out=out)
        return out[0, 0, y0 - r_start:y1 - r_start, x0 - c_start:x1 - c_start]

    def binary_masks(self, mask_pred: Tensor, meta: dict,
                     rescale: bool) -> Tensor:
        """``[n, h, w]`` logits -> bool ``[n, H, W]``: each mask's logits
        resized as :meth:`RapSAM.add_prompt_preds` resizes them (to the
        padded input size, cropped to ``img_shape``, to ``ori_shape`` when
        ``rescale``), then ``> 0``; bit for bit those calls' masks.

        A mask whose positive logits span a window of at most
        ``band_fraction`` of the image is resized on that window only
        (:meth:`_bands`): a click's mask at 800x1344 is often a small part
        of the image, and the two full-size resizes were most of its
        post-processing. Otherwise, or where a window would not give the
        same bits, the full-size calls are made: for three masks (on one
        thread PyTorch resizes three channels with another kernel, whose
        last bits a one-mask window's call does not reproduce) and for
        other than fp32 logits.
        """
        windows = self.prompt_windows(mask_pred, meta, rescale)
        if windows is None:
            return self.resized_logits(mask_pred, meta, rescale) > 0
        resize, bands = windows
        size = tuple(meta['batch_input_shape'])
        img_h, img_w = meta['img_shape'][:2]
        h, w = meta['ori_shape'][:2] if rescale else (img_h, img_w)
        # Zeros from calloc: the rows outside the windows are never
        # written.
        binary = torch.from_numpy(
            np.zeros((mask_pred.shape[0], h, w), dtype=bool))
        buf = {}
        for q, band in bands.items():
            c0, c1, y0, y1, d0, d1, x0, x1 = band
            if y1 <= y0:
                continue
            if resize is None:
                up, top, left = self._crop_upsample(mask_pred[q], c0, c1, d0,
                                                    d1, size, buf)
                logits = up[y0 - top:y1 - top, x0 - left:x1 - left]
            else:
                logits = self._band_resize(mask_pred[q], band, size, resize,
                                           buf)
            torch.gt(logits, 0, out=binary[q, y0:y1, x0:x1])
        return binary

    def prompt_windows(
        self, mask_pred: Tensor, meta: dict, rescale: bool
    ) -> Optional[Tuple[Optional[Tuple[BilinearRows, BilinearRows]], Dict[
            int, Tuple[int, ...]]]]:
        """Where :meth:`binary_masks` takes windows for every one of the
        ``[n, h, w]`` logits: the resize to ``ori_shape`` (None: none) and
        each mask's window (:meth:`_bands`); None where it makes the
        full-size calls."""
        n = mask_pred.shape[0]
        if n == 3 or mask_pred.dtype != torch.float32:
            return None
        plan = self._band_plan(mask_pred, tuple(meta['batch_input_shape']),
                               meta, rescale)
        bands = self._bands(mask_pred, list(range(n)), meta, plan)
        return (plan[1], bands) if len(bands) == n else None

    @staticmethod
    def resized_logits(mask_pred: Tensor, meta: dict, rescale: bool) -> Tensor:
        """``[n, h, w]`` logits resized by the full-size calls of
        :meth:`binary_masks`: ``[n, H, W]``."""
        masks = F.interpolate(
            mask_pred[None],
            size=tuple(meta['batch_input_shape']),
            mode='bilinear',
            align_corners=False)
        img_h, img_w = meta['img_shape'][:2]
        masks = masks[:, :, :img_h, :img_w]
        ori_shape = tuple(meta['ori_shape'][:2])
        # To the same size, bilinear interpolation is the identity
        # (weights 1 and 0): skipped, the same masks without a pass.
        if rescale and ori_shape != (img_h, img_w):
            masks = F.interpolate(
                masks, size=ori_shape, mode='bilinear', align_corners=False)
        return masks[0]

    def _vector_sigmoid(self, flat: Tensor, out: Tensor) -> Tensor:
        """``sigmoid`` of a contiguous tensor whose size is a multiple of
        32, with PyTorch's vectorised kernel on every element (see
        ``sigmoid_piece``)."""
        for i in range(0, len(flat), self.sigmoid_piece):
            j = min(i + self.sigmoid_piece, len(flat))
            torch.sigmoid(flat[i:j], out=out[i:j])
        return out

    def _band_stats(
        self,
        mask_pred: Tensor,
        band: Tuple[int, ...],
        size: Tuple[int, int],
        window: _SumWindow,
        buf: dict,
        resize: Optional[Tuple[BilinearRows, BilinearRows]] = None
    ) -> Tuple[Optional[Tensor], Tensor, Tensor, Tensor]:
        """One query's binary mask on its window (None when empty), mask
        score sum, pixel count and box, equal to :meth:`_mask_stats`'s on
        the full-size mask (``resize``: the rows and columns of the resize
        to ``ori_shape``, if any)."""
        c0, c1, y0, y1, d0, d1, x0, x1 = band
        if y1 <= y0:
            zero = mask_pred.new_zeros(())
            return None, zero, zero, mask_pred.new_zeros(4)
        if resize is None:
            up, top, left = self._crop_upsample(mask_pred, c0, c1, d0, d1,
                                                size, buf)
            logits = up[y0 - top:y1 - top, x0 - left:x1 - left]
        else:
            logits = self._band_resize(mask_pred, band, size, resize, buf)
        n = logits.numel()
        padded = -(-n // 32) * 32
        flat = self._flat(buf, 'logits', (padded, ), mask_pred)
        flat[:n].view_as(logits).copy_(logits)
        flat[n:].zero_()
        ones = torch.gt(
            flat, 0, out=self._flat(buf, 'ones', (padded, ), mask_pred))
        probs = self._vector_sigmoid(
            flat, self._flat(buf, 'probs', (padded, ), mask_pred))
        probs.mul_(ones)
        ones, probs = ones[:n].view_as(logits), probs[:n].view_as(logits)
        pixels, sums = window.sums(y0, x0, ones, probs)
        positive = ones.bool()
        boxes = self._boxes(positive[None])[0]
        if pixels > 0:
            boxes += boxes.new_tensor([x0, y0, x0, y0])
        return positive, sums, pixels, boxes

    @staticmethod
    def _flat(buffers: dict, name: str, shape, like: Tensor) -> Tensor:
        """A ``shape`` view of a buffer that grows to the largest asked."""
        numel = 1
        for d in shape:
            numel *= d
        buf = buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = buffers[name] = like.new_empty(max(numel, 1))
        return buf[:numel].view(shape)

    # ------------------------------------------------------------------
    # selection and resizing
    # ------------------------------------------------------------------
    def _panoptic_queries(self, mask_cls: Tensor) -> Tuple[Tensor, Tensor]:
        """mmdet's panoptic filter: foreground class above
        ``object_mask_thr``. Returns the best class scores and the bool
        mask of kept queries."""
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = labels.ne(self.num_classes) & (
            scores > self.test_cfg.get('object_mask_thr', 0.8))
        return scores, keep

    def _instance_selection(self,
                            mask_cls: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """mmdet's instance selection: the top ``max_per_image`` (query,
        class) pairs, things only (every pair where there are fewer, as
        with a few classes of one's own: mmdet's ``topk`` raises there).
        Returns scores, labels and queries."""
        scores = F.softmax(mask_cls, dim=-1)[:, :-1]
        max_per_image = min(
            self.test_cfg.get('max_per_image', 100), scores.numel())
        scores_per_image, top_indices = scores.flatten(0, 1).topk(
            max_per_image, sorted=False)
        labels_per_image = top_indices % self.num_classes
        query_indices = top_indices // self.num_classes
        is_thing = labels_per_image < self.num_things_classes
        return (scores_per_image[is_thing], labels_per_image[is_thing],
                query_indices[is_thing])

    @staticmethod
    def _buffer(buffers: dict,
                name: str,
                shape,
                like: Tensor,
                dtype=None) -> Tensor:
        dtype = like.dtype if dtype is None else dtype
        buf = buffers.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype \
                or buf.device != like.device:
            buf = buffers[name] = torch.empty(
                tuple(shape), dtype=dtype, device=like.device)
        return buf

    def _resize(self,
                masks: Tensor,
                size: Tuple[int, int],
                meta: dict,
                rescale: bool,
                buffers: Optional[dict] = None) -> Tensor:
        """``[n, h, w]`` logits -> padded input size -> cropped to the image
        -> ``ori_shape`` when ``rescale``: mmdet's calls, on fewer masks,
        into reused buffers, and with mmdet's memory layout at the end (it
        decides which sigmoid kernel runs, vectorised or not, and they
        differ in the last bit)."""
        buffers = {} if buffers is None else buffers
        n = masks.shape[0]
        img_h, img_w = meta['img_shape'][:2]
        if tuple(masks.shape[-2:]) != tuple(size):
            # F.interpolate's kernel, writing into a buffer.
            out = self._buffer(buffers, 'padded', (1, n) + tuple(size), masks)
            # Three channels on one thread take PyTorch's image kernel
            # (other last bits): a chunk of three is resized as 2 + 1.
            parts = [(0, 2), (2, 3)] if n == 3 else [(0, n)]
            for i, j in parts:
                torch._C._nn.upsample_bilinear2d(
                    masks[None, i:j],
                    tuple(size),
                    False,
                    None,
                    None,
                    out=out[:, i:j])
            masks = out[0]
        masks = masks[:, :img_h, :img_w]
        if not rescale:
            return masks
        out_h, out_w = meta['ori_shape'][:2]
        out = self._buffer(buffers, 'rescaled', (n, 1, out_h, out_w), masks)
        if (out_h, out_w) == (img_h, img_w):
            # A bilinear resize to the same size is the identity (weights
            # 1 and 0): a copy into the contiguous result mmdet would get.
            return masks if masks.is_contiguous() else out[:, 0].copy_(masks)
        return torch._C._nn.upsample_bilinear2d(
            masks[:, None], (out_h, out_w), False, None, None, out=out)[:, 0]

    @staticmethod
    def _rows(masks: Tensor, rows: List[int]) -> Tensor:
        """``masks[rows]``, a view (no copy) for consecutive rows."""
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return masks[rows[0]:rows[0] + len(rows)]
        return masks[rows]

    @staticmethod
    def _boxes(masks: Tensor) -> Tensor:
        """mmdet's ``mask2bbox`` (tight boxes of the true pixels, zeros for
        an empty mask), vectorised."""
        n, h, w = masks.shape
        as_bytes = masks.view(torch.uint8)
        rows = as_bytes.amax(dim=2)  # [n, h]
        # Columns only over the rows some mask has pixels in: objects are
        # often a small part of the image.
        used = rows.amax(0).nonzero()
        if len(used) == 0:
            return masks.new_zeros((n, 4), dtype=torch.float)
        top, bottom = int(used[0]), int(used[-1]) + 1
        cols = as_bytes[:, top:bottom].amax(dim=1)  # [n, w]
        x0 = cols.argmax(1)
        x1 = w - cols.flip(1).argmax(1)
        y0 = rows.argmax(1)
        y1 = h - rows.flip(1).argmax(1)
        boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
        return boxes * (cols.amax(1) > 0)[:, None]

    # ------------------------------------------------------------------
    # panoptic
    # ------------------------------------------------------------------
    def _panoptic(self, mask_cls: Tensor, claims: _Claims, h: int,
                  w: int) -> PixelData:
        """mmdet's ``panoptic_postprocess`` from the kept queries' claims,
        with the segment table.

        Queries are visited in order; each has claimed the pixels where its
        score-weighted probability is the highest, is dropped when less
        than ``iou_thr`` of its own mask (probability >= 0.5) is claimed,
        and paints what it claimed (only where its probability >= 0.5 with
        ``filter_low_score``).
        """
        iou_thr = self.test_cfg.get('iou_thr', 0.8)
        filter_low_score = self.test_cfg.get('filter_low_score', False)
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = labels.ne(self.num_classes) & (
            scores > self.test_cfg.get('object_mask_thr', 0.8))
        cur_scores = scores[keep]
        cur_classes = labels[keep].tolist()
        device = mask_cls.device
        background = self.num_classes
        panoptic = torch.full((h, w),
                              background,
                              dtype=torch.int32,
                              device=device)
        segments = []
        num = len(cur_classes)
        if num > 0:
            assert len(claims.own_area) == num
            owner = claims.owner
            claimed = torch.bincount(owner, minlength=num).tolist()
            segment_ids = [background] * num
            instance_id = 1
            for k, pred_class in enumerate(cur_classes):
                if claimed[k] > 0 and claims.own_area[k] > 0:
                    if claimed[k] / claims.own_area[k] < iou_thr:
                        continue
                    if pred_class < self.num_things_classes:
                        segment_ids[k] = pred_class + \
                            instance_id * INSTANCE_OFFSET
                        instance_id += 1
                    else:
                        # Stuff regions of one class merge (instance 0).
                        segment_ids[k] = pred_class

            segment_map = torch.tensor(
                segment_ids, dtype=torch.int32, device=device)[owner]
            painted = segment_map != background
            if filter_low_score:
                painted &= claims.foreground_mask()
            panoptic = torch.where(painted, segment_map,
                                   panoptic.view(-1)).view(h, w)

            # The segment table: area and best painting query per id.
            painted_area = torch.bincount(
                owner[painted], minlength=num).tolist()
            # Read once (one wait for a GPU, not one per segment).
            score_list = cur_scores.tolist()
            table = {}
            for k, segment_id in enumerate(segment_ids):
                if segment_id == background or painted_area[k] == 0:
                    continue
                area, score = table.get(segment_id, (0, None))
                k_score = score_list[k]
                table[segment_id] = (area + painted_area[k], k_score
                                     if score is None else max(score, k_score))
            for segment_id in sorted(table):
                area, score = table[segment_id]
                label = segment_id % INSTANCE_OFFSET
                segments.append(
                    dict(
                        id=segment_id,
                        label=label,
                        isthing=label < self.num_things_classes,
                        score=score,
                        area=area))
        result = PixelData(sem_seg=panoptic[None])
        result.set_metainfo(dict(segments=segments))
        return result

    # mmdet's per-image entry points, for callers that use them directly
    # (logits already at the output size).
    def panoptic_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> PixelData:
        h, w = mask_pred.shape[-2:]
        meta = dict(img_shape=(h, w), ori_shape=(h, w))
        return self._predict_one(mask_cls, mask_pred, meta, (h, w), False,
                                 True, False)['pan_results']

    def instance_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> InstanceData:
        h, w = mask_pred.shape[-2:]
        meta = dict(img_shape=(h, w), ori_shape=(h, w))
        return self._predict_one(mask_cls, mask_pred, meta, (h, w), False,
                                 False, True)['ins_results']
