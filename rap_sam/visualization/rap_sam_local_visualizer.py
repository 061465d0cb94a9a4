from typing import List, Optional

import numpy as np
from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer
from mmengine.dist import master_only
from mmengine.structures import PixelData

from rap_sam.datasets import display_names


@VISUALIZERS.register_module()
class RapSAMLocalVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` for RAP-SAM's results.

    Two differences:

    - labels show each class's display name, the first synonym
      (``'person'``), instead of the synonym list the open-vocabulary
      classifier is built from (``'person,child,girl,...'``);
    - an image whose panoptic map holds no segment (all void) is drawn as
      it is: mmdet's panoptic drawing fails on it.

    Arguments are ``DetLocalVisualizer``'s.
    """

    @property  # type: ignore
    @master_only
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter  # type: ignore
    @master_only
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        if dataset_meta:
            dataset_meta = dict(dataset_meta)
            for key in ('classes', 'thing_classes', 'stuff_classes'):
                if dataset_meta.get(key) is not None:
                    dataset_meta[key] = display_names(dataset_meta[key])
        self._dataset_meta = dataset_meta

    def _draw_panoptic_seg(self, image: np.ndarray, panoptic_seg: PixelData,
                           classes: Optional[List[str]],
                           palette: Optional[List]) -> np.ndarray:
        # The void id, as DetLocalVisualizer works it out.
        if 'label_names' in panoptic_seg:
            void = panoptic_seg.metainfo.get(
                'ignore_index', len(panoptic_seg.metainfo['label_names']))
        else:
            void = len(classes)
        ids = np.unique(np.asarray(panoptic_seg.sem_seg[0]))
        if (ids == void).all():
            return image
        return super()._draw_panoptic_seg(image, panoptic_seg, classes,
                                          palette)
