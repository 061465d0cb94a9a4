from .pack_prompt_inputs import PackPromptInputs
from .panoptic_segments import LoadPanopticSegments, encode_rle
from .prompts import GenerateSegmentPrompts, click_box, farthest_point

__all__ = [
    'LoadPanopticSegments', 'GenerateSegmentPrompts', 'PackPromptInputs',
    'farthest_point', 'click_box', 'encode_rle'
]
