from .decoder_stage import DecoderStage, update_with_pooled
from .deform_upsample_layer import DeformUpsampleLayer
from .kernel_updator import KernelUpdator
from .lite_deform_fpn import LiteDeformFPN
from .low_rank_feature_map import (FeatureMap, LowRankFeatureMap,
                                   coordinate_channels, dense, masked_sum,
                                   project, softmax_pool, weighted_sum,
                                   with_coordinates)
from .open_vocab_classifier import OpenVocabClassifier
from .prompt_attention import attend_to_feature_map

__all__ = [
    'DecoderStage', 'DeformUpsampleLayer', 'KernelUpdator', 'LiteDeformFPN',
    'OpenVocabClassifier', 'attend_to_feature_map', 'FeatureMap',
    'LowRankFeatureMap', 'coordinate_channels', 'dense', 'masked_sum',
    'project', 'softmax_pool', 'update_with_pooled', 'weighted_sum',
    'with_coordinates'
]
