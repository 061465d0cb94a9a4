# RAP-SAM with the frozen OpenCLIP ConvNeXt-L image tower (the reference's
# ConvNeXt-L recipe), 12 epochs of joint training:
#   ./tools/dist_train.sh configs/rap_sam/rap_sam_convl_12e_adaptor.py 8
# The CLIP weights (laion2b_s29b_b131k_ft_soup) must be on local disk (see
# rap_sam/utils/openclip_loader.py for where they are looked up). The
# backbone stays frozen (fix=True), so only the neck and head train.
from mmengine.config import read_base

from rap_sam.models import OpenCLIPBackbone

with read_base():
    from .rap_sam_r50_12e_adaptor import *  # noqa: F401,F403

# The backbone is replaced, not merged into the R50 one (a pure-Python
# config's update() keeps the keys it is not given, _delete_ or not).
model.backbone = dict(
    type=OpenCLIPBackbone,
    model_name=ov_model_name,
    fix=True,
    init_cfg=dict(
        type='clip_pretrain', checkpoint='laion2b_s29b_b131k_ft_soup'))
# ConvNeXt-L's stage widths.
model.neck.update(in_channels=(192, 384, 768, 1536))
