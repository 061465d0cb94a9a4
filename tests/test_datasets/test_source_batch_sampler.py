"""SourceAspectRatioBatchSampler: one source, one aspect ratio per batch."""
import pytest
from torch.utils.data import Sampler

from rap_sam.datasets import SourceAspectRatioBatchSampler


class FakeConcat:
    """Samples i with source i % 3, portrait when i % 4 == 0."""
    data_tags = ('coco', 'yt19', 'sam')

    def __len__(self):
        return 40

    def get_dataset_source(self, idx):
        return idx % 3

    def is_portrait(self, idx):
        return idx % 4 == 0


class ListSampler(Sampler):

    def __init__(self, dataset, order):
        self.dataset, self.order = dataset, order

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


@pytest.mark.parametrize('drop_last', [False, True])
def test_batches_keep_one_source(drop_last):
    dataset = FakeConcat()
    order = [(7 * i) % 40 for i in range(40)]
    sampler = SourceAspectRatioBatchSampler(
        ListSampler(dataset, order), batch_size=3, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))
    for batch in batches:
        assert len({i % 3 for i in batch}) == 1
    full = [b for b in batches if len(b) == 3]
    assert all(len({i % 4 == 0 for i in b}) == 1 for b in full)
    if drop_last:
        assert len(batches) == len(full)
    else:
        assert sorted(seen) == list(range(40))


def test_batch_size_per_source():
    dataset = FakeConcat()
    sampler = SourceAspectRatioBatchSampler(
        ListSampler(dataset, list(range(40))),
        batch_size=dict(coco=1, yt19=2, sam=4))
    for batch in sampler:
        source = batch[0] % 3
        assert len(batch) <= (1, 2, 4)[source]
