from typing import Dict, Iterator, List, Union

import torch
import torch.distributed as dist
from mmdet.registry import DATA_SAMPLERS
from mmengine.dist import get_comm_device, get_default_group, get_dist_info
from torch.utils.data import BatchSampler, Sampler


@DATA_SAMPLERS.register_module()
class SourceAspectRatioBatchSampler(BatchSampler):
    """Batches of one source and one aspect-ratio group.

    A batch feeds one loss (panoptic clips, video clips or prompts), so its
    samples must come from one source of a :class:`ConcatOVDataset`; within a
    source, portrait and landscape images go to separate batches (as mmdet's
    ``AspectRatioBatchSampler``) to waste less padding. Leftovers are batched
    at the end of an epoch unless ``drop_last``.

    Under DDP every rank must run the same number of iterations although its
    share of each source differs a little: each rank builds its epoch's
    batches up front and all ranks yield the smallest count.

    Args:
        sampler: index sampler over a dataset with ``get_dataset_source`` and
            ``is_portrait`` (or ``get_data_info`` with width / height).
        batch_size: one size for all sources, or ``{data_tag: size}``.
        drop_last: drop incomplete batches.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: Union[int, Dict[str, int]],
                 drop_last: bool = False) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(f'sampler must be a Sampler, got {sampler}')
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self._len_cache = None

    def _size(self, source: int) -> int:
        if isinstance(self.batch_size, int):
            return self.batch_size
        return self.batch_size[self.sampler.dataset.data_tags[source]]

    def _portrait(self, idx: int) -> bool:
        dataset = self.sampler.dataset
        if hasattr(dataset, 'is_portrait'):
            return dataset.is_portrait(idx)
        info = dataset.get_data_info(idx)
        info = info['images'][0] if 'images' in info else info
        return info['width'] < info['height']

    def _batches(self) -> List[List[int]]:
        dataset = self.sampler.dataset
        buckets: Dict[tuple, List[int]] = {}
        batches = []
        for idx in self.sampler:
            source = dataset.get_dataset_source(idx)
            bucket = buckets.setdefault((source, self._portrait(idx)), [])
            bucket.append(idx)
            if len(bucket) == self._size(source):
                batches.append(bucket[:])
                bucket.clear()
        if not self.drop_last:
            # Leftovers of one source share a batch whatever their aspect.
            by_source: Dict[int, List[int]] = {}
            for (source, _), bucket in sorted(buckets.items()):
                by_source.setdefault(source, []).extend(bucket)
            for source, left in by_source.items():
                size = self._size(source)
                batches += [
                    left[i:i + size] for i in range(0, len(left), size)
                ]
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        batches = self._batches()
        count = len(batches)
        _, world_size = get_dist_info()
        if world_size > 1:
            group = get_default_group()
            total = torch.tensor(count, device=get_comm_device(group))
            dist.all_reduce(total, op=dist.ReduceOp.MIN, group=group)
            count = int(total.item())
        yield from batches[:count]

    def __len__(self) -> int:
        # The log asks every few iterations; a pass over a large epoch's
        # indices is worth caching while the sampler's epoch is the same.
        epoch = getattr(self.sampler, 'epoch', None)
        if self._len_cache is None or self._len_cache[0] != epoch:
            self._len_cache = (epoch, len(self._batches()))
        return self._len_cache[1]
