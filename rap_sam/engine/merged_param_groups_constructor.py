from typing import List

import torch.nn as nn
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.optim import DefaultOptimWrapperConstructor


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsConstructor(DefaultOptimWrapperConstructor):
    """mmengine's constructor (same ``paramwise_cfg``, same per-parameter
    settings), with parameters of equal settings in one group.

    The default constructor makes one group per parameter (about 300 for
    RAP-SAM), and the optimiser steps group by group: AdamW's ``fused`` /
    ``foreach`` kernels then see one tensor at a time, and the Python loop
    over groups costs more than the small toy model's step. Groups keep the
    order of their first parameter, so the first group (whose lr the logger
    reports) is the one the first parameter belongs to.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   **kwargs) -> None:
        if prefix:
            return super().add_params(params, module, prefix, **kwargs)
        groups: List[dict] = []
        super().add_params(groups, module, prefix, **kwargs)
        merged = {}
        for group in groups:
            settings = repr(
                sorted((k, v) for k, v in group.items() if k != 'params'))
            if settings not in merged:
                merged[settings] = dict(group, params=[])
                params.append(merged[settings])
            merged[settings]['params'].extend(group['params'])
