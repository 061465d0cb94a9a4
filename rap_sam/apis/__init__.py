from .inputs import InputError, check_prompts, iter_frames, read_image
from .predictor import RapSAMPredictor

__all__ = [
    'InputError', 'RapSAMPredictor', 'check_prompts', 'iter_frames',
    'read_image'
]
