from .rap_sam_data_preprocessor import RapSAMDataPreprocessor

__all__ = ['RapSAMDataPreprocessor']
