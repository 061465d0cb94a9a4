# Video instance AP of the toy model on the toy YouTube-VIS videos (128 px).
# The toy data has one video split, train.json with its annotations
# (tools/make_toy_data.py), so AP is computed locally on it.
from mmengine.config import read_base

with read_base():
    from .eval_rap_sam_yt19 import *  # noqa: F401,F403
    from .toy_rap_sam_model import *  # noqa: F401,F403

model.update(toy_model)
model.update(
    panoptic_head=dict(ov_classifier_name='toy_YouTubeVISDataset_2019'))
test_dataloader.update(num_workers=0, persistent_workers=False)
test_dataloader.dataset.update(
    data_root=toy_root + 'data/youtube_vis_2019/',
    ann_file='train.json',
    data_prefix=dict(img_path='train/JPEGImages'))
test_dataloader.dataset.pipeline[0].transforms[1].update(scale=toy_image_size)
test_evaluator.update(
    format_only=False, outfile_prefix=toy_root + 'eval_yt19/results')
val_dataloader = test_dataloader
val_evaluator = test_evaluator
