"""One class space for several datasets, merged by synonym.

The released R50 model was trained on COCO panoptic and YouTube-VIS 2019 at
once, over 102 things + 53 stuff: a YouTube-VIS class that shares a synonym
with a COCO class ('dog' with 'dog,dogs,puppy,puppies') is that class, the
others are appended. The class-embedding file of the joint space
(``convnext_large_d_320_Concat_CocoPanopticOVDataset_YouTubeVISDataset_2019``)
is encoded from these merged names in this order, so the order matters.
"""
from typing import Dict, List, NamedTuple, Sequence

import numpy as np


def normalise_name(name: str) -> str:
    """YouTube-VIS writes 'giant_panda' where CLIP wants 'giant panda'; '/'
    separates synonyms in some datasets as ',' does here."""
    return name.replace('/', ',').replace('_', ' ')


def synonyms(name: str) -> set:
    return {s.strip() for s in normalise_name(name).split(',') if s.strip()}


class JointClassSpace(NamedTuple):
    """``label_maps[i][k]`` is the joint label of dataset i's label k
    (things first, then stuff, as in mmdet's panoptic labels)."""
    thing_classes: List[str]
    stuff_classes: List[str]
    label_maps: List[np.ndarray]

    @property
    def classes(self) -> List[str]:
        return self.thing_classes + self.stuff_classes


def _merge(names: Sequence[str], joint: List[str]) -> List[int]:
    """Index in ``joint`` of each name, appending names with no shared
    synonym (the first match wins, as in the reference)."""
    index = []
    for name in names:
        words = synonyms(name)
        match = next(
            (i for i, other in enumerate(joint) if words & synonyms(other)),
            None)
        if match is None:
            joint.append(normalise_name(name))
            match = len(joint) - 1
        index.append(match)
    return index


def merge_class_spaces(metainfos: Sequence[Dict]) -> JointClassSpace:
    """Merge the classes of datasets, given their ``metainfo`` in order.

    A dataset's things are ``thing_classes`` (else all ``classes``), its
    stuff ``stuff_classes`` (else none). Things merge only with things and
    stuff only with stuff.
    """
    things, stuff, index = [], [], []
    for meta in metainfos:
        dataset_things = meta.get('thing_classes', meta.get('classes', ()))
        dataset_stuff = meta.get('stuff_classes', ())
        index.append((_merge(dataset_things,
                             things), _merge(dataset_stuff, stuff)))
    label_maps = [
        np.array(t + [len(things) + s for s in st], dtype=np.int64)
        for t, st in index
    ]
    return JointClassSpace(things, stuff, label_maps)


def _find(names: Sequence[str], joint: Sequence[str]) -> List[int]:
    joint = [synonyms(c) for c in joint]
    return [
        next((i for i, c in enumerate(joint) if synonyms(n) & c), -1)
        for n in names
    ]


def map_into(meta: Dict, space: JointClassSpace) -> np.ndarray:
    """Joint label of each label of a dataset that did not shape the space
    (a class-agnostic source), by synonym; -1 where nothing matches."""
    things = _find(
        meta.get('thing_classes', meta.get('classes', ())),
        space.thing_classes)
    stuff = [
        -1 if s < 0 else len(space.thing_classes) + s
        for s in _find(meta.get('stuff_classes', ()), space.stuff_classes)
    ]
    return np.array(things + stuff, dtype=np.int64)
