# RAP-SAM R50, 12 epochs of joint training on COCO panoptic + YouTube-VIS
# 2019 + COCO prompts (the recipe of the released rapsam_r50_12e.pth):
#   ./tools/dist_train.sh configs/rap_sam/rap_sam_r50_12e_adaptor.py 8
# Evaluate the result with the eval_rap_sam_*.py configs (they swap in the
# target dataset's classifier). The joint class embeddings are read from
#   ~/.cache/embd/convnext_large_d_320_Concat_CocoPanopticOVDataset_YouTubeVISDataset_2019.pth
# (python tools/gen_cls.py configs/rap_sam/rap_sam_r50_12e_adaptor.py \
#      --split train).
from mmdet.models.task_modules.assigners import (ClassificationCost,
                                                 CrossEntropyLossCost,
                                                 DiceCost, HungarianAssigner)
from mmdet.models.task_modules.samplers import MaskPseudoSampler
from mmengine.config import read_base

from rap_sam.engine import SkippedSamplesHook

with read_base():
    from .._base_.datasets.coco_yt19_sam_train import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.rap_sam_r50 import *  # noqa: F401,F403
    from .._base_.schedules.schedule_12e import *  # noqa: F401,F403

model.update(
    train_cfg=dict(
        num_points=12544,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        assigner=dict(
            type=HungarianAssigner,
            match_costs=[
                dict(type=ClassificationCost, weight=2.0),
                dict(type=CrossEntropyLossCost, weight=5.0, use_sigmoid=True),
                dict(type=DiceCost, weight=5.0, pred_act=True, eps=1.0)
            ]),
        sampler=dict(type=MaskPseudoSampler),
        # Beyond the reference (whose IoU head stays untrained): learn the
        # IoU of each prompt mask (MSE, as SAM) so masks can be ranked;
        # 0 turns it off.
        iou_loss_weight=1.0,
        # The reference's jitter of prompt boxes (fraction of their size).
        prompt_box_noise=0.004))

# BN statistics synchronised across GPUs (mmengine applies it only when
# distributed; tools/train.py leaves it out on CPU, where SyncBN cannot run).
sync_bn = 'torch'
custom_hooks = [dict(type=SkippedSamplesHook, interval=50)]
default_hooks.update(checkpoint=dict(interval=1, max_keep_ckpts=3))

# No validation or test loop here: the joint classifier does not fit the
# evaluation datasets' label spaces; evaluate checkpoints with the eval
# configs instead (they swap in the target classifier).
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
