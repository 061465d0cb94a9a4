# COCO panoptic val2017 with the released R50 model:
#   ./tools/dist_test.sh configs/rap_sam/eval_rap_sam_coco.py \
#       rapsam_r50_12e.pth 8
from mmengine.config import read_base

with read_base():
    from .._base_.datasets.coco_panoptic_ov import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.rap_sam_r50 import *  # noqa: F401,F403

num_things_classes = 80
num_stuff_classes = 53
model.update(
    panoptic_head=dict(
        ov_classifier_name=f'{ov_model_name}_CocoPanopticOVDataset',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    test_cfg=dict(panoptic_on=True, instance_on=True))
