from .autocast_weights import cast_autocast_weights
from .fold_batch_norm import fold_batch_norms, fold_conv_bn
from .mask_rles import encode_mask_rles
from .prompts import CLICK_RADIUS, clicks_to_boxes
from .video_clips import match_queries, split_video
from .vocabulary import VocabularyError, set_vocabulary, use_vocabulary

__all__ = [
    'CLICK_RADIUS', 'cast_autocast_weights', 'clicks_to_boxes',
    'encode_mask_rles', 'fold_batch_norms', 'fold_conv_bn', 'match_queries',
    'set_vocabulary', 'split_video', 'use_vocabulary', 'VocabularyError'
]
