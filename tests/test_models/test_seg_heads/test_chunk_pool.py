"""The fusion head's chunks shared among threads: every chunk done once,
each worker single-threaded with scratch of its own, the caller's modes and
thread count kept, a worker's error raised; and the head's results with
several workers equal mmdet's, bit for bit the one-worker results."""
import random
import threading
import time

import pytest
import torch
from mmdet.structures import DetDataSample
from test_scored_panoptic_fusion_head import assert_same

from rap_sam.deploy import ReferenceFusionHead
from rap_sam.models.seg_heads import ScoredPanopticFusionHead
from rap_sam.models.seg_heads.chunk_pool import (EXTRA_WORKERS_BYTES,
                                                 MAX_CHUNK_WORKERS,
                                                 num_chunk_workers, run_chunks)
from rap_sam.testing.fusion_outputs import object_like_outputs, random_outputs


@pytest.mark.parametrize('workers', [1, 2, 3])
def test_every_chunk_once(workers):
    chunks = list(range(17))
    done = []
    threads_seen = set()
    names = set()
    rng = random.Random(0)
    delays = [rng.random() * 0.003 for _ in chunks]

    def work(chunk, buffers):
        threads_seen.add(torch.get_num_threads())
        names.add(threading.current_thread().name)
        # A worker's own scratch: never another worker's.
        owner = buffers.setdefault('owner', threading.current_thread().name)
        assert owner == threading.current_thread().name
        time.sleep(delays[chunk])
        done.append(chunk)

    before = torch.get_num_threads()
    run_chunks(chunks, work, torch.device('cpu'), workers)
    assert sorted(done) == chunks
    assert torch.get_num_threads() == before
    if workers > 1:
        assert threads_seen == {1}
        assert len(names) == workers
    else:
        assert done == chunks
        assert names == {threading.current_thread().name}


def test_later_threads_get_the_callers_thread_count():
    threads = torch.get_num_threads()
    run_chunks([0, 1], lambda c, b: None, torch.device('cpu'), 2)
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [threads]


def test_worker_error_is_raised_once_all_stop():
    done = []

    def work(chunk, buffers):
        if chunk == 4:
            raise ValueError('chunk 4 is bad')
        time.sleep(0.001)
        done.append(chunk)

    with pytest.raises(ValueError, match='chunk 4 is bad'):
        run_chunks(list(range(40)), work, torch.device('cpu'), 2)
    # The other worker stopped taking chunks soon after.
    assert len(done) < 39


def test_caller_modes_hold_in_workers():
    with torch.inference_mode():
        target = torch.zeros(6)

        def work(chunk, buffers):
            # An in-place write to an inference tensor needs inference mode.
            target[chunk] += chunk + 1

        run_chunks(list(range(6)), work, torch.device('cpu'), 3)
    assert target.tolist() == [1, 2, 3, 4, 5, 6]

    seen = []
    with torch.no_grad():
        run_chunks([0, 1], lambda c, b: seen.append(torch.is_grad_enabled()),
                   torch.device('cpu'), 2)
    assert seen == [False, False]


def test_worker_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert num_chunk_workers(torch.device('cpu'), 10) == 2
        assert num_chunk_workers(torch.device('cpu'), 1) == 1
        assert num_chunk_workers(torch.device('meta'), 10) == 1
        # Large images: the extra workers' scratch memory is bounded.
        big = EXTRA_WORKERS_BYTES + 1
        assert num_chunk_workers(torch.device('cpu'), 10, big) == 1
        assert num_chunk_workers(torch.device('cpu'), 10,
                                 EXTRA_WORKERS_BYTES) == 2
        # Many threads: a few workers (each with its own scratch tensors)
        # of several threads each.
        torch.set_num_threads(8)
        assert num_chunk_workers(torch.device('cpu'), 10) == MAX_CHUNK_WORKERS
        assert num_chunk_workers(torch.device('cpu'), 10,
                                 EXTRA_WORKERS_BYTES) == 2
    finally:
        torch.set_num_threads(threads)


def test_workers_share_the_threads():
    threads = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(4)
        run_chunks(
            list(range(4)), lambda c, b: seen.append(torch.get_num_threads()),
            torch.device('cpu'), 2)
        assert seen == [2, 2, 2, 2]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def _head_pair(workers):
    kwargs = dict(
        num_things_classes=80,
        num_stuff_classes=53,
        test_cfg=dict(panoptic_on=True, instance_on=True))
    ours = ScoredPanopticFusionHead(**kwargs)
    ours.chunk_workers = workers
    return ours, ReferenceFusionHead(segments=True, **kwargs)


def _in_lockstep(chunks, work, device, workers=None, bytes_per_worker=0):
    """:func:`run_chunks` with each round of ``workers`` chunks in hand
    before any runs: every worker gets a chunk of each round, where on a
    busy machine one worker could take them all and the claims would be
    merged from one part only."""
    if not workers or workers <= 1:
        return run_chunks(chunks, work, device, workers, bytes_per_worker)
    rounds = [
        threading.Barrier(min(workers,
                              len(chunks) - start), timeout=60)
        for start in range(0, len(chunks), workers)
    ]
    position = {id(chunk): i for i, chunk in enumerate(chunks)}

    def gated(chunk, buffers):
        # A worker waiting here takes no other chunk: a round's chunks go
        # to as many workers.
        rounds[position[id(chunk)] // workers].wait()
        work(chunk, buffers)

    return run_chunks(chunks, gated, device, workers, bytes_per_worker)


@pytest.mark.parametrize('outputs', ['objects', 'random'])
@pytest.mark.parametrize('shapes', [((96, 160), (96, 160)),
                                    ((96, 160), (61, 97))])
def test_head_with_workers_is_mmdet(outputs, shapes, monkeypatch):
    import rap_sam.models.seg_heads.scored_panoptic_fusion_head as module
    merged = []
    real_merge = module._Claims.merge

    def merge(self, other):
        merged.append(other.best is not None)
        return real_merge(self, other)

    monkeypatch.setattr(module._Claims, 'merge', merge)
    monkeypatch.setattr(module, 'run_chunks', _in_lockstep)
    (h, w), (oh, ow) = shapes
    make = object_like_outputs if outputs == 'objects' else random_outputs
    cls, masks = make((h // 4, w // 4), seed=3)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(oh, ow),
            batch_input_shape=(h, w),
            pad_shape=(h, w)))
    pooled, reference = _head_pair(3)
    alone, _ = _head_pair(1)
    got = pooled.predict(cls, masks, [sample], rescale=True)[0]
    claim_parts = sum(merged)
    assert_same(got, reference.predict(cls, masks, [sample], rescale=True)[0])
    want = alone.predict(cls, masks, [sample], rescale=True)[0]
    assert torch.equal(got['pan_results'].sem_seg, want['pan_results'].sem_seg)
    for key in ('masks', 'bboxes', 'labels', 'scores'):
        assert torch.equal(got['ins_results'].get(key),
                           want['ins_results'].get(key)), key
    if outputs == 'objects':
        # The case has panoptic segments, claimed in several parts.
        assert len(got['pan_results'].segments) > 0
        assert claim_parts > 1


def test_a_large_photo_keeps_one_worker(monkeypatch):
    """The results' size decides: masks resized to a 12 MP photo would
    need about 0.6 GB of scratch per worker."""
    import rap_sam.models.seg_heads.scored_panoptic_fusion_head as module
    asked = []
    real = module.run_chunks

    def spy(chunks, work, device, workers=None, bytes_per_worker=0):
        if chunks:
            asked.append(
                num_chunk_workers(device, len(chunks), bytes_per_worker))
        return real(chunks, work, device, workers, bytes_per_worker)

    monkeypatch.setattr(module, 'run_chunks', spy)
    head, _ = _head_pair(None)
    cls, masks = random_outputs((200, 336), seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for ori_shape, workers in (((800, 1344), 2), ((3000, 4000), 1)):
            asked.clear()
            sample = DetDataSample(
                metainfo=dict(
                    img_shape=(800, 1344),
                    ori_shape=ori_shape,
                    batch_input_shape=(800, 1344),
                    pad_shape=(800, 1344)))
            head.predict(cls[:, :4], masks[:, :4], [sample], rescale=True)
            assert asked and set(asked) == {workers}, ori_shape
    finally:
        torch.set_num_threads(threads)


def test_query_masks_with_workers_are_the_same():
    cls, masks = object_like_outputs((24, 40), seed=1)
    meta = dict(img_shape=(96, 160), ori_shape=(96, 160))
    pooled, _ = _head_pair(3)
    alone, _ = _head_pair(1)
    a = pooled.predict_query_masks(masks[0], meta, (96, 160), False)
    b = alone.predict_query_masks(masks[0], meta, (96, 160), False)
    assert a.masks == b.masks
    assert torch.equal(a.bboxes, b.bboxes)
    assert torch.equal(a.mask_scores, b.mask_scores)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_claims_in_parts_merge_to_argmax(seed):
    """Kept queries split into parts (each in ascending order), claimed
    part by part and merged in any order: mmdet's argmax (first query on
    ties), its owner's p >= 0.5, and every query's area."""
    from rap_sam.models.seg_heads.scored_panoptic_fusion_head import _Claims
    g = torch.Generator().manual_seed(seed)
    num, pixels = 9, 500
    # Few distinct values: many ties between queries.
    scores = torch.randint(1, 4, (num, ), generator=g).float() / 4
    probs = torch.randint(0, 5, (num, pixels), generator=g).float() / 4
    weighted = scores[:, None] * probs
    owner = weighted.argmax(0)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, num), 3))
    groups = [list(range(a, b)) for a, b in zip([0] + cuts, cuts + [num])]
    parts = [_Claims(scores, pixels) for _ in range(2)]
    for i, group in enumerate(groups):
        # Parts take groups alternately, each in ascending order.
        parts[i % 2].add(probs[group], group[0])
    merged = _Claims(scores, pixels)
    for part in reversed(parts):
        merged.merge(part)
    assert torch.equal(merged.owner, owner)
    assert torch.equal(merged.best, weighted.max(0).values)
    assert torch.equal(merged.foreground_mask(), probs[owner,
                                                       torch.arange(pixels)]
                       >= 0.5)
    assert merged.own_area == (probs >= 0.5).sum(1).tolist()
