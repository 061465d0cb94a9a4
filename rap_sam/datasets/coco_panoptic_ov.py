import copy
from typing import List

from mmdet.datasets import CocoPanopticDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

from .class_names import COCO_PANOPTIC_OV_STUFF, COCO_PANOPTIC_OV_THINGS
from .data_checks import (DatasetContentError, check_annotation_file,
                          check_files_exist, entries_complete,
                          sample_load_error)
from .orphan_annotations import check_no_orphan_annotations

COCO_LAYOUT = """\
  <data_root>/                      (data/coco/)
    val2017/*.jpg                    train2017/*.jpg
    annotations/panoptic_val2017.json
    annotations/panoptic_val2017/*.png   (RGB-encoded segment ids)
    annotations/panoptic_train2017.json, .../panoptic_train2017/*.png"""


@DATASETS.register_module()
class CocoPanopticOVDataset(CocoPanopticDataset):
    """COCO panoptic with open-vocabulary class names.

    ``classes`` hold comma-separated synonyms (``'person,child,girl,...'``),
    one per COCO panoptic class in mmdet's order (80 things, 53 stuff). The
    names cannot be looked up in the annotation file, so categories are
    mapped by position: the file must list the 133 COCO panoptic categories,
    which are checked against mmdet's plain names. ``display_names`` gives
    the plain name of each class.

    Evaluate it with ``CocoPanopticMetric(ann_file=None, seg_prefix=...)``:
    with an ``ann_file`` that metric looks categories up by name, which fails
    for these names (see ``configs/_base_/datasets/coco_panoptic_ov.py``).
    """

    METAINFO = dict(
        classes=COCO_PANOPTIC_OV_THINGS + COCO_PANOPTIC_OV_STUFF,
        thing_classes=COCO_PANOPTIC_OV_THINGS,
        stuff_classes=COCO_PANOPTIC_OV_STUFF,
        palette=CocoPanopticDataset.METAINFO['palette'])
    # The class-embedding file is named after this (tools/gen_cls.py).
    dataset_name = 'CocoPanopticOVDataset'

    def load_data_list(self) -> List[dict]:
        check_annotation_file(self.ann_file, self.data_root, COCO_LAYOUT)
        with entries_complete(self.ann_file, 'COCO panoptic'):
            return self._load_data_list()

    def _load_data_list(self) -> List[dict]:
        with get_local_path(
                self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = self.COCOAPI(local_path)
        self.cat_ids = self._category_ids()
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)
        check_no_orphan_annotations(self.ann_file,
                                    self.coco.dataset.get('annotations'),
                                    self.coco.imgs)

        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = dict(self.coco.imgs[img_id], img_id=img_id)
            data_list.append(
                self.parse_data_info(
                    dict(
                        raw_img_info=raw_img_info,
                        raw_ann_info=self.coco.img_ann_map.get(img_id, []))))
        del self.coco
        if self.backend_args is None:
            check_files_exist([d['img_path'] for d in data_list], 'images',
                              self.ann_file, COCO_LAYOUT)
            check_files_exist(
                [d['seg_map_path'] for d in data_list if d['seg_map_path']],
                'panoptic PNGs', self.ann_file, COCO_LAYOUT)
        return data_list

    def _category_ids(self) -> List[int]:
        cats = sorted(self.coco.cats.values(), key=lambda c: c['id'])
        names = [c['name'] for c in cats]
        expected = list(CocoPanopticDataset.METAINFO['classes'])
        if len(self.metainfo['classes']) != len(expected):
            raise DatasetContentError(
                f'{type(self).__name__} maps categories by position and '
                f'needs all {len(expected)} classes, got '
                f"{len(self.metainfo['classes'])} in metainfo.")
        if names != expected:
            diff = next(
                (i for i, (a, b) in enumerate(zip(names, expected)) if a != b),
                min(len(names), len(expected)))
            found = names[diff] if diff < len(names) else 'nothing'
            want = expected[diff] if diff < len(expected) else 'nothing'
            raise DatasetContentError(
                f"'{self.ann_file}' must list the {len(expected)} COCO "
                f'panoptic categories (80 things, 53 stuff) sorted by id; it '
                f'has {len(names)}, and category #{diff} is {found!r} where '
                f'{want!r} was expected.')
        return [c['id'] for c in cats]

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except Exception as err:
            info = self.get_data_info(idx)
            paths = [info.get('img_path'), info.get('seg_map_path')]
            raise sample_load_error(type(self).__name__, idx, paths,
                                    err) from err
