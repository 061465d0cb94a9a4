import random
from typing import List

import numpy as np
from mmdet.datasets.transforms import BaseFrameSample
from mmdet.registry import TRANSFORMS

from ..skipped_samples import skip_sample


@TRANSFORMS.register_module()
class ClipFrameSample(BaseFrameSample):
    """Sample a training clip: ``num_frames`` frames ``interval`` apart from
    a random start (the recipe: 2 frames, interval 2).

    A video too short for the interval gets the largest interval that fits;
    a video with fewer than ``num_frames`` frames cannot give a clip and is
    rejected (None: the dataset draws another video).
    """

    def __init__(self,
                 num_frames: int = 2,
                 interval: int = 2,
                 collect_video_keys: List[str] = ('video_id', 'video_length')):
        super().__init__(collect_video_keys=list(collect_video_keys))
        self.num_frames = num_frames
        self.interval = interval

    def transform(self, video_infos: dict):
        length = video_infos['video_length']
        if length < self.num_frames:
            return skip_sample(
                f"video {video_infos.get('video_id')} has {length} frame(s), "
                f'a clip needs {self.num_frames}')
        interval = self.interval
        if self.num_frames > 1:
            interval = max(
                1, min(interval, (length - 1) // (self.num_frames - 1)))
        span = (self.num_frames - 1) * interval + 1
        start = random.randint(0, length - span)
        return self.prepare_data(video_infos,
                                 start + np.arange(self.num_frames) * interval)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_frames={self.num_frames}, '
                f'interval={self.interval})')
