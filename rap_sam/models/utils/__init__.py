from .prompts import CLICK_RADIUS, clicks_to_boxes
from .video_clips import match_queries, split_video
from .vocabulary import set_vocabulary

__all__ = [
    'CLICK_RADIUS', 'clicks_to_boxes', 'match_queries', 'set_vocabulary',
    'split_video'
]
