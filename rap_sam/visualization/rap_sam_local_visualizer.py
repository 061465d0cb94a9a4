from typing import List, Optional

import cv2
import numpy as np
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmdet.visualization import DetLocalVisualizer
from mmengine.dist import master_only
from mmengine.structures import InstanceData, PixelData

from rap_sam.datasets import display_names


@VISUALIZERS.register_module()
class RapSAMLocalVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` for RAP-SAM's results.

    Three differences:

    - labels show each class's display name, the first synonym
      (``'person'``), instead of the synonym list the open-vocabulary
      classifier is built from (``'person,child,girl,...'``);
    - an image whose panoptic map holds no segment (all void) is drawn as
      it is: mmdet's panoptic drawing fails on it;
    - instances at another size than the image drawn on are scaled to it
      (the prompt evaluation's ground truth is loaded before the resize,
      so it comes at the network's scale, while mmdet's hook draws on the
      file's image).

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

    def _draw_instances(self, image: np.ndarray, instances: InstanceData,
                        classes: Optional[List[str]],
                        palette: Optional[List]) -> np.ndarray:
        masks = instances.get('masks')
        if masks is not None and len(instances) > 0:
            if isinstance(masks, torch.Tensor):
                masks = masks.cpu().numpy()
            elif isinstance(masks, (BitmapMasks, PolygonMasks)):
                masks = masks.to_ndarray()
            h, w = masks.shape[-2:]
            height, width = image.shape[:2]
            if (h, w) != (height, width):
                instances = instances.clone()
                instances.masks = np.stack([
                    cv2.resize(
                        m.astype(np.uint8), (width, height),
                        interpolation=cv2.INTER_NEAREST) for m in masks
                ]).astype(bool)
                if 'bboxes' in instances:
                    scale = instances.bboxes.new_tensor(
                        [width / w, height / h, width / w, height / h])
                    instances.bboxes = instances.bboxes * scale
        return super()._draw_instances(image, instances, classes, palette)
