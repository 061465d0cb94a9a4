import copy
import logging
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.registry import DATASETS
from mmdet.structures import TrackDataSample
from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.logging import print_log

from .data_checks import (DatasetContentError, SampleLoadError, damaged_file,
                          missing_files_tolerated)
from .joint_class_space import map_into, merge_class_spaces
from .skipped_samples import bad_file_reason, pop_skip_reason, skip_sample


def _with_lazy_init(cfg: dict, lazy_init: bool) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg['lazy_init'] = lazy_init
    if isinstance(cfg.get('dataset'), dict):  # RepeatDataset and its kind
        cfg['dataset'] = _with_lazy_init(cfg['dataset'], lazy_init)
    return cfg


def _unwrap(dataset, idx: Optional[int] = None):
    """The innermost dataset and the index into it (RepeatDataset maps
    ``idx`` modulo the inner length); without ``idx`` nothing is loaded."""
    while hasattr(dataset, 'dataset') and hasattr(dataset,
                                                  '_get_ori_dataset_idx'):
        if idx is not None:
            idx = dataset._get_ori_dataset_idx(idx)
        dataset = dataset.dataset
    return dataset, idx


@DATASETS.register_module()
class ConcatOVDataset(ConcatDataset):
    """Datasets of several kinds trained together, over one class space.

    Each dataset carries a source tag (``data_tags``, e.g. ``'coco'``,
    ``'yt19'``, ``'sam'``); every sample gets it as ``metainfo['data_tag']``
    (on the ``TrackDataSample`` for clips) and the model routes the batch to
    the loss of that kind. Labels are mapped into the joint class space of
    :func:`merge_class_spaces`; sources in ``prompt_tags`` are class-agnostic
    (prompts are supervised by their segment, not a class) and do not shape
    the class space, so the concatenation of COCO panoptic, YouTube-VIS 2019
    and COCO prompts has 102 things + 53 stuff and ``dataset_name``
    ``Concat_CocoPanopticOVDataset_YouTubeVISDataset_2019``, the name of the
    released joint class-embedding file.

    A sample that a transform rejects (returns None) is replaced by another
    sample of the same source, so batches keep their kind; the reasons
    (see :mod:`.skipped_samples`) ride along as ``metainfo['skipped_samples']``
    for the log. ``max_refetch`` rejections in a row stop the run: then the
    data, not bad luck, is the problem.

    Bad files do not stop training: a sample whose image (or panoptic PNG,
    or any frame of its video) is missing, empty, truncated or undecodable,
    or whose files contradict its annotation (a panoptic PNG holding none
    of the listed segments:
    :class:`~rap_sam.datasets.data_checks.SampleContentError`), is skipped
    the same way, its reason naming the files. Too many of them
    do stop it, with :class:`DatasetContentError`: when building, more
    than ``max_bad_fraction`` of a dataset's listed files missing (a wrong
    data root or prefix); while training, more than ``max_bad_fraction`` of
    a source's samples drawn so far (once at least ``min_bad_samples`` were
    bad) having bad files. Counts are per data loader worker.

    Args:
        datasets: dataset configs or instances.
        data_tags: one source tag per dataset.
        prompt_tags: the class-agnostic (prompt) sources.
        lazy_init: build without loading annotations (``tools/gen_cls.py``).
        max_refetch: rejections in a row before giving up.
        max_bad_fraction: the largest share of bad files tolerated.
        min_bad_samples: bad samples of a source before the share counts.
    """

    def __init__(self,
                 datasets: Sequence[Union[BaseDataset, dict]],
                 data_tags: Sequence[str],
                 prompt_tags: Sequence[str] = ('sam', ),
                 lazy_init: bool = False,
                 max_refetch: int = 100,
                 max_bad_fraction: float = 0.5,
                 min_bad_samples: int = 20):
        if len(data_tags) != len(datasets):
            raise ValueError(f'{len(datasets)} datasets need as many '
                             f'data_tags, got {tuple(data_tags)}.')
        # Not mmengine's __init__: it refuses wrapped datasets (RepeatDataset)
        # and requires equal metainfo, where here the class spaces differ
        # by design and are merged below.
        self.max_bad_fraction = max_bad_fraction
        self.min_bad_samples = min_bad_samples
        with missing_files_tolerated(max_bad_fraction):
            self.datasets = [
                DATASETS.build(_with_lazy_init(d, lazy_init)) if isinstance(
                    d, dict) else d for d in datasets
            ]
        self.ignore_keys = []
        self._fully_initialized = False
        self.data_tags = tuple(data_tags)
        self.max_refetch = max_refetch
        self._drawn = [0] * len(self.datasets)
        self._bad = [0] * len(self.datasets)

        metas = [d.metainfo for d in self.datasets]
        vocab = [i for i, t in enumerate(data_tags) if t not in prompt_tags]
        space = merge_class_spaces([metas[i] for i in vocab])
        self.label_maps = [
            torch.from_numpy(space.label_maps[vocab.index(i)] if i in
                             vocab else map_into(metas[i], space))
            for i in range(len(metas))
        ]
        names = [self._name(self.datasets[i]) for i in vocab]
        self.dataset_name = ('Concat_'
                             if len(names) > 1 else '') + '_'.join(names)
        self._metainfo = dict(
            classes=tuple(space.classes),
            thing_classes=tuple(space.thing_classes),
            stuff_classes=tuple(space.stuff_classes),
            data_tags=self.data_tags)
        self._portrait: Optional[List[np.ndarray]] = None
        print_log(
            f'{self.dataset_name}: {len(space.thing_classes)} things + '
            f'{len(space.stuff_classes)} stuff; sources ' +
            ', '.join(f'{t} ({self._name(d)}, x{getattr(d, "times", 1)})'
                      for t, d in zip(self.data_tags, self.datasets)),
            logger='current',
            level=logging.INFO)
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        with missing_files_tolerated(self.max_bad_fraction):
            super().full_init()

    @staticmethod
    def _name(dataset) -> str:
        inner, _ = _unwrap(dataset)
        name = getattr(inner, 'dataset_name', None)
        return name if isinstance(name, str) else type(inner).__name__

    def get_dataset_source(self, idx: int) -> int:
        """Index of the dataset (source) that sample ``idx`` comes from."""
        return self._get_ori_dataset_idx(idx)[0]

    def is_portrait(self, idx: int) -> bool:
        """Whether sample ``idx`` (a video's first frame for videos) is
        taller than wide; cached, for the aspect-ratio batch sampler."""
        if self._portrait is None:
            self._portrait = [
                self._portrait_flags(_unwrap(d)[0]) for d in self.datasets
            ]
        source, sample_idx = self._get_ori_dataset_idx(idx)
        dataset, inner = _unwrap(self.datasets[source], sample_idx)
        return bool(self._portrait[source][inner])

    @staticmethod
    def _portrait_flags(dataset) -> np.ndarray:
        flags = np.zeros(len(dataset), dtype=bool)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            info = info['images'][0] if 'images' in info else info
            flags[i] = info.get('width', 1) < info.get('height', 0)
        return flags

    @staticmethod
    def _sample_files(dataset, idx) -> List[Optional[str]]:
        # mmdet's video datasets also take (video, frames) tuples
        info = dataset.get_data_info(idx[0] if isinstance(idx, tuple) else idx)
        if 'images' in info:  # a video: every frame
            return [im.get('img_path') for im in info['images']]
        return [info.get('img_path'), info.get('seg_map_path')]

    def _prepare(self, source: int, dataset, idx) -> Optional[dict]:
        """``dataset.prepare_data(idx)``; None, with the reason recorded,
        for a training sample with missing or damaged files."""
        if dataset.test_mode:
            return dataset.prepare_data(idx)
        self._drawn[source] += 1
        problems = [
            p for p in map(damaged_file, self._sample_files(dataset, idx)) if p
        ]
        if not problems:
            try:
                return dataset.prepare_data(idx)
            except SampleLoadError as err:
                if not err.problems:  # the files are fine: a pipeline bug
                    raise
                problems = err.problems
        self._bad[source] += 1
        bad, drawn = self._bad[source], self._drawn[source]
        if (bad >= self.min_bad_samples
                and bad > self.max_bad_fraction * drawn):
            raise DatasetContentError(
                f'{self.data_tags[source]}: {bad} of the {drawn} samples '
                f'drawn had missing or damaged files (more than '
                f'{self.max_bad_fraction:.0%}), last: '
                f"{'; '.join(problems)}. Check the data (data/README.md).")
        return skip_sample(bad_file_reason(problems))

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        source, sample_idx = self._get_ori_dataset_idx(idx)
        dataset, inner = _unwrap(self.datasets[source], sample_idx)
        skipped = []
        data = self._prepare(source, dataset, inner)
        while data is None and not dataset.test_mode:
            skipped.append(pop_skip_reason() or 'rejected by the pipeline')
            if len(skipped) > self.max_refetch:
                raise DatasetContentError(
                    f"{self.data_tags[source]}: {len(skipped)} samples in a "
                    f'row were unusable (last: {skipped[-1]}); check the '
                    'data and the pipeline.')
            data = self._prepare(source, dataset, dataset._rand_another())
        if data is None:
            return data
        samples = data['data_samples']
        for frame in (samples
                      if isinstance(samples, TrackDataSample) else [samples]):
            if 'gt_instances' in frame and 'labels' in frame.gt_instances:
                labels = frame.gt_instances.labels
                frame.gt_instances.labels = self.label_maps[source].to(
                    labels.device)[labels.long()]
        samples.set_metainfo(
            dict(
                data_tag=self.data_tags[source],
                skipped_samples=tuple(skipped)))
        return data
