from .rap_sam_head import RapSAMHead

__all__ = ['RapSAMHead']
