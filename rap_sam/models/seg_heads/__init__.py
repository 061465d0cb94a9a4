from .scored_panoptic_fusion_head import ScoredPanopticFusionHead

__all__ = ['ScoredPanopticFusionHead']
