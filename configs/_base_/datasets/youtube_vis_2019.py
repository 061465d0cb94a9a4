# YouTube-VIS 2019 valid: one sample per whole video (video-level test mode
# of mmdet's video datasets with DefaultSampler), frames resized to
# (1280, 736) keep-ratio. The valid split has no public annotations, so the
# metric only writes the server's results json (+ zip); set
# format_only=False to compute AP on a split with annotations.
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import Resize
from mmengine.dataset import DefaultSampler

from rap_sam.datasets import PackLazyTrackInputs, YouTubeVISOVDataset
from rap_sam.evaluation import YouTubeVISMetricCompat

data_root = 'data/youtube_vis_2019/'
dataset_version = '2019'
backend_args = None
image_size = (1280, 736)

# The frames are read one clip at a time by the model (PackLazyTrackInputs
# hands it a LazyVideo running these transforms), not the whole video by the
# dataloader: the evaluation's memory does not grow with the video's length.
# The results are those of TransformBroadcaster(LoadImageFromFile, Resize,
# LoadTrackAnnotations) + PackTrackInputs, byte for byte; the ground truth
# the metric reads is in each frame's metainfo ('instances').
test_pipeline = [
    dict(
        type=PackLazyTrackInputs,
        transforms=[
            dict(type=LoadImageFromFile, backend_args=backend_args),
            dict(type=Resize, scale=image_size, keep_ratio=True),
        ]),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type=DefaultSampler, shuffle=False, round_up=False),
    dataset=dict(
        type=YouTubeVISOVDataset,
        dataset_version=dataset_version,
        data_root=data_root,
        # the official file; mmdet's converted
        # 'annotations/youtube_vis_2019_valid.json' works too
        ann_file='valid.json',
        data_prefix=dict(img_path='valid/JPEGImages'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
val_dataloader = test_dataloader

# mmdet's YouTubeVISMetric; the Compat subclass only makes its AP code run
# on NumPy >= 1.24 (mmdet 3.3 still calls np.float there).
test_evaluator = dict(
    type=YouTubeVISMetricCompat,
    metric='youtube_vis_ap',
    outfile_prefix='work_dirs/youtube_vis_2019/results',
    format_only=True)
val_evaluator = test_evaluator
