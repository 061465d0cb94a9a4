from .dataset_meta import config_dataset_meta, meta_fits
from .rap_sam_local_visualizer import RapSAMLocalVisualizer

__all__ = ['config_dataset_meta', 'meta_fits', 'RapSAMLocalVisualizer']
