from .prompts import CLICK_RADIUS, clicks_to_boxes
from .video_clips import match_queries, split_video

__all__ = ['CLICK_RADIUS', 'clicks_to_boxes', 'match_queries', 'split_video']
