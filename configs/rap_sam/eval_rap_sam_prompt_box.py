# COCO-SAM with boxes beside clicks: every segment keeps its click and every
# thing is also prompted with its box; reports box_mIoU next to the click
# mIoU / NoC of eval_rap_sam_prompt.py.
from mmengine.config import read_base

with read_base():
    from .eval_rap_sam_prompt import *  # noqa: F401,F403

test_dataloader.dataset.pipeline[3].thing_prompt = 'both'
val_dataloader = test_dataloader
