from .inputs import (DEFAULT_MAX_PIXELS, IMAGE_EXTS, InputError,
                     check_image_size, check_prompts, iter_frames,
                     max_pixels_limit, parse_numbers, read_image)
from .predictor import RapSAMPredictor

__all__ = [
    'DEFAULT_MAX_PIXELS', 'IMAGE_EXTS', 'InputError', 'RapSAMPredictor',
    'check_image_size', 'check_prompts', 'iter_frames', 'max_pixels_limit',
    'parse_numbers', 'read_image'
]
