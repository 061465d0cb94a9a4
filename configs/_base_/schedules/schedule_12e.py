# The recipe's optimiser and 12-epoch schedule: AdamW lr 1e-4 (for a total
# batch of 16, scaled to the actual one), weight decay 0.05 except on norms
# and embeddings, backbone lr x0.1, gradient-norm clip 0.01, 500 linear
# warm-up iterations, lr x0.1 after epochs 8 and 11.
from mmengine.optim import LinearLR, MultiStepLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop, TestLoop, ValLoop
from torch.optim import AdamW

from rap_sam.engine import MergedParamGroupsConstructor

max_epochs = 12
train_cfg = dict(
    type=EpochBasedTrainLoop, max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type=ValLoop)
test_cfg = dict(type=TestLoop)

param_scheduler = [
    dict(type=LinearLR, start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type=MultiStepLR,
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# No decay on embeddings: the learned queries, the prompt-type embedding
# and the mask tokens (and the backbone's positional parameters, if any).
_no_decay = dict(lr_mult=1.0, decay_mult=0.0)
# Parameters of equal settings share a param group (mmengine's constructor
# makes one per parameter; the step is the same, with fewer, larger
# kernel calls).
optim_wrapper = dict(
    type=OptimWrapper,
    constructor=MergedParamGroupsConstructor,
    optimizer=dict(
        type=AdamW, lr=0.0001, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'panoptic_head.kernels': _no_decay,
            'panoptic_head.pb_embedding': _no_decay,
            'panoptic_head.mask_tokens': _no_decay,
            'query_embed': _no_decay,
            'query_feat': _no_decay,
            'level_embed': _no_decay,
        },
        norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.01, norm_type=2))

# lr 1e-4 is for 16 samples per iteration (8 GPUs x 2); mmengine scales it
# by (GPUs x batch_size) / 16.
auto_scale_lr = dict(enable=True, base_batch_size=16)
