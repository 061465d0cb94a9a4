from .half_resolution_fusion_head import HalfResolutionFusionHead
from .scored_panoptic_fusion_head import ScoredPanopticFusionHead

__all__ = ['ScoredPanopticFusionHead', 'HalfResolutionFusionHead']
