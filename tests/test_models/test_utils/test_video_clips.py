import pytest
import torch

from rap_sam.models.utils import match_queries, split_video


@pytest.mark.parametrize(
    'frames,size,expected',
    [
        (15, 5, [5, 5, 5]),
        (17, 5, [5, 4, 4, 4]),  # 3 frames short: the last three clips shrink
        (16, 5, [5, 5, 5, 1]),  # 4 short of 4 clips: only the last shrinks
        (7, 3, [3, 2, 2]),
        (2, 3, [2]),
        (1, 5, [1]),
    ])
def test_split_video_known_answers(frames, size, expected):
    clips = split_video(frames, size)
    assert [e - s for s, e in clips] == expected
    assert clips[0][0] == 0 and clips[-1][1] == frames
    assert all(a[1] == b[0] for a, b in zip(clips, clips[1:]))


def test_split_video_rejects_empty():
    with pytest.raises(ValueError, match='at least one frame'):
        split_video(0, 5)


def test_match_queries_recovers_permutation():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(10, 16, generator=g)
    perm = torch.randperm(10, generator=g)
    current = reference[perm] * 3 + 0.01 * torch.randn(10, 16, generator=g)
    order = match_queries(reference, current)
    assert torch.equal(current[order].argmax(-1), reference.argmax(-1))
    assert torch.equal(perm[order], torch.arange(10))
