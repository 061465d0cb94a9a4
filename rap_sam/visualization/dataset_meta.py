"""Class names and colours that fit a model's outputs."""
import copy
from typing import Optional

import numpy as np
from mmdet.registry import DATASETS

from rap_sam.datasets import display_names


def meta_fits(meta: Optional[dict], num_classes: int) -> bool:
    """Whether ``meta`` names exactly ``num_classes`` classes."""
    classes = (meta or {}).get('classes')
    return classes is not None and len(classes) == num_classes


def config_dataset_meta(cfg, num_classes: int, num_things: int) -> dict:
    """Display names and colours of ``cfg``'s test dataset for a model of
    ``num_classes`` classes (the first ``num_things`` things), or generic
    ``class_{i}`` names and seeded colours where the dataset's do not fit.

    The dataset is built with ``lazy_init`` (no annotations read), as
    mmdet's ``init_detector`` and ``DetInferencer`` build it for its palette,
    so a dataset whose classes depend on its arguments (YouTube-VIS 2019 or
    2021) reports the right ones. A training config (no test dataset) gives
    its training set's classes, those its head's classifier was made of
    (``tools/gen_cls.py`` reads the same).
    """
    cfg = cfg or {}
    test = (cfg.get('test_dataloader') or {}).get('dataset')
    train = (cfg.get('train_dataloader') or {}).get('dataset')
    meta = {}
    if test:
        dataset = copy.deepcopy(test)
        dataset['lazy_init'] = True
        meta = DATASETS.build(dataset).metainfo
    elif train:
        from rap_sam.utils.text_classifier import dataset_vocabulary
        meta = dict(classes=dataset_vocabulary(train)[1])
    classes = meta.get('classes')
    if classes is not None and len(classes) == num_classes:
        names = display_names(classes)
    else:
        names = [f'class_{i}' for i in range(num_classes)]
    palette = meta.get('palette')
    if palette is None or len(palette) < num_classes:
        rng = np.random.default_rng(0)
        palette = [
            tuple(int(c) for c in rng.integers(0, 256, 3))
            for _ in range(num_classes)
        ]
    return dict(
        classes=names,
        thing_classes=names[:num_things],
        stuff_classes=names[num_things:],
        palette=[tuple(c) for c in palette[:num_classes]])
