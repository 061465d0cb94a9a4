from .class_names import (COCO_PANOPTIC_OV_STUFF, COCO_PANOPTIC_OV_THINGS,
                          YOUTUBE_VIS_2019_CLASSES, display_names)
from .coco_panoptic_ov import CocoPanopticOVDataset
from .data_checks import (DatasetContentError, DatasetLayoutError,
                          SampleLoadError)
from .transforms import (GenerateSegmentPrompts, LoadPanopticSegments,
                         PackPromptInputs, farthest_point)
from .youtube_vis_ov import YouTubeVISOVDataset

__all__ = [
    'CocoPanopticOVDataset', 'YouTubeVISOVDataset', 'display_names',
    'COCO_PANOPTIC_OV_THINGS', 'COCO_PANOPTIC_OV_STUFF',
    'YOUTUBE_VIS_2019_CLASSES', 'LoadPanopticSegments',
    'GenerateSegmentPrompts', 'PackPromptInputs', 'farthest_point',
    'DatasetLayoutError', 'DatasetContentError', 'SampleLoadError'
]
