from .predictor import RapSAMPredictor

__all__ = ['RapSAMPredictor']
