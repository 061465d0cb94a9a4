from .rap_sam import RapSAM
from .rap_sam_video import RapSAMVideo

__all__ = ['RapSAM', 'RapSAMVideo']
