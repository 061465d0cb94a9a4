"""ClipLinker: clips cut as the model was evaluated, queries put back in
track order, window means, and one id per (track, class)."""
import pytest
import torch

from rap_sam.models.tracking import ClipLinker


def clip_outputs(num_queries=6, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, num_queries, 4, generator=g),
            torch.randn(1, num_queries, frames, 3, 5, generator=g),
            torch.rand(1, num_queries, 1, generator=g),
            torch.randn(1, num_queries, 16, generator=g))


def test_clips_of_whole_and_chunked_videos():
    linker = ClipLinker(clip_size=5, clip_size_small=3, small_video_frames=15)
    assert linker.clips(7) == [(0, 3), (3, 5), (5, 7)]
    assert linker.clips(17) == [(0, 5), (5, 9), (9, 13), (13, 17)]
    # A chunk of a longer video is cut in full-size clips.
    assert linker.clips(7, whole_video=False) == [(0, 5), (5, 7)]


def test_a_shuffled_clip_is_put_back_in_track_order():
    linker = ClipLinker()
    first = clip_outputs()
    linked = linker.link(*first)
    for a, b in zip(linked, first[:3]):
        assert a is b  # the first clip sets the order
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = [x[:, perm] for x in first]
    relinked = linker.link(*shuffled)
    for a, b in zip(relinked, first[:3]):
        assert torch.equal(a, b)
    # The next clip is matched to the relinked one, not to the shuffled.
    again = linker.link(*shuffled)
    for a, b in zip(again, first[:3]):
        assert torch.equal(a, b)


def test_window_means_and_new_window():
    linker = ClipLinker()
    with pytest.raises(RuntimeError, match='no clip'):
        linker.scores()
    a, b = clip_outputs(seed=1), clip_outputs(seed=2)
    b = (b[0], b[1], b[2], a[3])  # same embeddings: identity matching
    linker.link(*a)
    linker.link(*b)
    cls, iou = linker.scores()
    assert torch.equal(cls, (a[0] + b[0]) / 2)
    assert torch.equal(iou, (a[2] + b[2]) / 2)
    linker.new_window()
    linker.link(*b)
    cls, _ = linker.scores()
    assert torch.equal(cls, b[0])


def test_one_id_per_track_and_class():
    linker = ClipLinker()
    ids = linker.track_ids(torch.tensor([4, 1, 4]), torch.tensor([0, 2, 3]))
    assert ids.tolist() == [1, 2, 3]
    # Later windows: the same (query, class) keeps its id, a query whose
    # class changed gets a new one.
    ids = linker.track_ids(torch.tensor([1, 4]), torch.tensor([2, 1]))
    assert ids.tolist() == [2, 4]
    assert ids.dtype == torch.long


class ClipModel:
    """Stands in for RapSAM: a clip's features are its inputs (frame
    numbers), its outputs ``clip_outputs()``'s with masks that say which
    query and frame they are (``100 * query + frame``), the queries in the
    order ``orders`` gives (so the linker has something to put back)."""

    def __init__(self, orders):
        self.orders, self.fed = iter(orders), []

    def extract_feat(self, inputs):
        return inputs.flatten(0, 1).clone()

    def _clip_outputs(self, feats, samples):
        self.fed.append((feats, samples))
        cls_scores, _, ious, queries = clip_outputs()
        masks = torch.arange(6.)[:, None] * 100 + feats.flatten()
        order = next(self.orders)
        return [
            x[:, order]
            for x in (cls_scores, masks[None, :, :, None, None], ious, queries)
        ]


def test_link_clips_reads_each_clip_once_and_links_it():
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    model = ClipModel([torch.arange(6), perm, perm.flip(0)])
    asked = []

    def clip(start, end):
        asked.append((start, end))
        return torch.arange(
            start, end, dtype=torch.float)[None, :,
                                           None], [f'samples {start}:{end}']

    linker = ClipLinker(clip_size=3)
    linker.link(*clip_outputs())  # an earlier window: the tracks carry on
    got = list(linker.link_clips(model, clip, 7, whole_video=False))
    assert asked == [(0, 3), (3, 5), (5, 7)]
    assert [(s, e, samples)
            for s, e, samples, _, _ in got] == [(0, 3, ['samples 0:3']),
                                                (3, 5, ['samples 3:5']),
                                                (5, 7, ['samples 5:7'])]
    for (_, _, samples, feats, _), fed in zip(got, model.fed):
        assert feats is fed[0] and samples is fed[1]
    # Every clip is put in track order: query q's masks are q's.
    cls_scores, _, ious, _ = clip_outputs()
    for start, end, _, _, (clip_cls, masks, clip_ious) in got:
        assert torch.equal(clip_cls, cls_scores)
        assert torch.equal(clip_ious, ious)
        assert torch.equal(
            masks[0, :, :, 0, 0],
            torch.arange(6.)[:, None] * 100 + torch.arange(start, end))
    # A new window: the means are this call's three clips'.
    assert linker.num_clips == 3
    assert torch.allclose(linker.scores()[0], cls_scores)


def test_link_clips_keeps_no_clip_once_handed_out():
    """The evaluation drops a clip's features before the next clip is read;
    the linker must not hold them meanwhile."""
    import weakref
    model = ClipModel([torch.arange(6)] * 2)
    clips = ClipLinker(clip_size=2).link_clips(
        model, lambda s, e: (torch.zeros(1, e - s, 1), [None]), 4, False)
    _, _, _, feats, outputs = next(clips)
    feats_ref, masks_ref = weakref.ref(feats), weakref.ref(outputs[1])
    del feats, outputs
    model.fed.clear()
    assert feats_ref() is None and masks_ref() is None
    assert len(list(clips)) == 1
