from .clip_frame_sample import ClipFrameSample
from .filter_small_segments import FilterSmallSegments
from .image_as_clip import ImageAsClip
from .load_panoptic_train import LoadPanopticTrainAnnotations
from .pack_prompt_inputs import PackPromptInputs
from .pack_prompt_train_inputs import PackPromptTrainInputs
from .panoptic_segments import LoadPanopticSegments, encode_rle
from .prompts import GenerateSegmentPrompts, click_box, farthest_point
from .train_prompts import GenerateTrainPrompts

__all__ = [
    'LoadPanopticSegments', 'GenerateSegmentPrompts', 'PackPromptInputs',
    'farthest_point', 'click_box', 'encode_rle', 'ClipFrameSample',
    'FilterSmallSegments', 'ImageAsClip', 'LoadPanopticTrainAnnotations',
    'PackPromptTrainInputs', 'GenerateTrainPrompts'
]
