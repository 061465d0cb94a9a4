from .class_names import (COCO_PANOPTIC_OV_STUFF, COCO_PANOPTIC_OV_THINGS,
                          YOUTUBE_VIS_2019_CLASSES, display_names)
from .coco_panoptic_ov import CocoPanopticOVDataset
from .concat_ov_dataset import ConcatOVDataset
from .data_checks import (DamagedSampleError, DatasetContentError,
                          DatasetLayoutError, SampleContentError,
                          SampleLoadError)
from .joint_class_space import JointClassSpace, merge_class_spaces
from .source_batch_sampler import SourceAspectRatioBatchSampler
from .transforms import (ClipFrameSample, FilterSmallSegments,
                         GenerateSegmentPrompts, GenerateTrainPrompts,
                         ImageAsClip, LoadPanopticSegments,
                         LoadPanopticTrainAnnotations, PackPromptInputs,
                         PackPromptTrainInputs, farthest_point)
from .transforms.lazy_video import LazyVideo
from .transforms.pack_lazy_track_inputs import PackLazyTrackInputs
from .youtube_vis_ov import YouTubeVISOVDataset

__all__ = [
    'CocoPanopticOVDataset', 'YouTubeVISOVDataset', 'display_names',
    'COCO_PANOPTIC_OV_THINGS', 'COCO_PANOPTIC_OV_STUFF',
    'YOUTUBE_VIS_2019_CLASSES', 'LoadPanopticSegments',
    'GenerateSegmentPrompts', 'PackPromptInputs', 'farthest_point',
    'DatasetLayoutError', 'DatasetContentError', 'SampleLoadError',
    'DamagedSampleError', 'SampleContentError', 'ConcatOVDataset',
    'JointClassSpace', 'merge_class_spaces', 'SourceAspectRatioBatchSampler',
    'ClipFrameSample', 'FilterSmallSegments', 'GenerateTrainPrompts',
    'ImageAsClip', 'LoadPanopticTrainAnnotations', 'PackPromptTrainInputs',
    'LazyVideo', 'PackLazyTrackInputs'
]
