# PQ of the toy model on the toy COCO-panoptic val split (128 px).
from mmengine.config import read_base

with read_base():
    from .eval_rap_sam_coco import *  # noqa: F401,F403
    from .toy_rap_sam_model import *  # noqa: F401,F403

model.update(toy_model)
model.update(
    panoptic_head=dict(ov_classifier_name='toy_CocoPanopticOVDataset'))
test_dataloader.update(num_workers=0, persistent_workers=False)
test_dataloader.dataset.update(data_root=toy_root + 'data/coco/')
test_dataloader.dataset.pipeline[1].update(scale=toy_image_size)
test_evaluator.update(seg_prefix=toy_root +
                      'data/coco/annotations/panoptic_val2017/')
val_dataloader = test_dataloader
val_evaluator = test_evaluator
