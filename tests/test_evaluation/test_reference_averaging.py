"""The reference's COCO-SAM averaging replayed, against hand-worked lists."""
import numpy as np
import pytest

from rap_sam.evaluation import (default_sampler_indices,
                                reference_segment_subset)

# Three images with 3, 1 and 2 segments.
PER_IMAGE = [
    np.array([0.9, 0.1, 0.5]),
    np.array([0.3]),
    np.array([0.8, 0.6]),
]


def test_sampler_deals_round_robin_and_pads_from_the_start():
    # 3 images on 2 processes: 4 slots, the 4th repeats image 0.
    assert default_sampler_indices(3, 2, 0) == [0, 2]
    assert default_sampler_indices(3, 2, 1) == [1, 0]
    assert default_sampler_indices(3, 1, 0) == [0, 1, 2]
    # More processes than images: the list is repeated.
    assert [default_sampler_indices(2, 5, r) for r in range(5)] == [[0], [1],
                                                                    [0], [1],
                                                                    [0]]


@pytest.mark.parametrize(
    'num_processes, expected',
    [
        # one process: its own list cut at 3 (the number of images)
        (1, [0.9, 0.1, 0.5]),
        # rank 0 holds images 0, 2: [.9 .1 .5 .8 .6]; rank 1 images 1, 0
        # (padding): [.3 .9 .1 .5]; interleaved .9 .3 .1 .9 ..., cut at 3
        (2, [0.9, 0.3, 0.1]),
        # one image per rank; zip stops at rank 1's single segment
        (3, [0.9, 0.3, 0.8]),
    ])
def test_known_subsets(num_processes, expected):
    subset = reference_segment_subset(PER_IMAGE, num_processes)
    np.testing.assert_array_equal(subset, expected)


def test_the_mean_depends_on_the_process_count():
    means = [reference_segment_subset(PER_IMAGE, w).mean() for w in (1, 2, 3)]
    assert means == pytest.approx([1.5 / 3, 1.3 / 3, 2.0 / 3])
    # All six segments average 3.2 / 6: none of the above.
    assert np.concatenate(PER_IMAGE).mean() == pytest.approx(3.2 / 6)


def test_zip_against_zip_longest():
    # Rank 1 (images 1, 3) holds one segment: mmengine 0.8.4's zip stops
    # there, mmengine >= 0.10.3 goes on with rank 0's list.
    per_image = [[0.2, 0.4], [1.0], [0.6], []]
    np.testing.assert_array_equal(
        reference_segment_subset(per_image, 2), [0.2, 1.0])
    np.testing.assert_array_equal(
        reference_segment_subset(per_image, 2, zip_longest_collect=True),
        [0.2, 1.0, 0.4, 0.6])


def test_empty_dataset():
    assert reference_segment_subset([], 8).size == 0
