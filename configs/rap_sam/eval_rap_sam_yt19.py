# YouTube-VIS 2019 valid with the released R50 model (results json for the
# evaluation server; AP locally when annotations are present):
#   ./tools/dist_test.sh configs/rap_sam/eval_rap_sam_yt19.py \
#       rapsam_r50_12e.pth 8
from mmengine.config import read_base

from rap_sam.models import RapSAMVideo

with read_base():
    from .._base_.datasets.youtube_vis_2019 import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.rap_sam_r50 import *  # noqa: F401,F403

num_things_classes = 40
num_stuff_classes = 0
model.update(
    type=RapSAMVideo,
    clip_size=5,
    clip_size_small=3,
    small_video_frames=15,
    panoptic_head=dict(
        ov_classifier_name=f'{ov_model_name}_YouTubeVISDataset_2019',
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    panoptic_fusion_head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes),
    # Per-frame masks leave the model as RLEs: a long video's full-size
    # masks would not fit in memory.
    test_cfg=dict(panoptic_on=False, instance_on=True, rle_masks=True))
