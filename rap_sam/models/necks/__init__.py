from .lite_deform_neck import LiteDeformNeck

__all__ = ['LiteDeformNeck']
