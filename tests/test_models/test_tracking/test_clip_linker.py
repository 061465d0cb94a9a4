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
