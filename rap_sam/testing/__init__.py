from .coco_panoptic_categories import coco_panoptic_categories
from .data_batches import image_batch, video_batch
from .seeded_weights import randomize_
from .toy_datasets import (make_coco_panoptic, make_youtube_vis, mask_bbox,
                           shape_mask, track_annotation, uncompressed_rle)

__all__ = [
    'make_coco_panoptic', 'make_youtube_vis', 'coco_panoptic_categories',
    'shape_mask', 'mask_bbox', 'track_annotation', 'uncompressed_rle',
    'randomize_', 'image_batch', 'video_batch'
]
