"""``test_step`` batches built from arrays, as the data pipeline would pack
them for images that need no resize (``ori_shape == img_shape``, scale
factor 1): the tests' inputs and the benchmark's."""
from typing import Optional, Sequence

import numpy as np
import torch


def image_batch(images: Sequence[np.ndarray],
                prompts: Optional[Sequence] = None) -> dict:
    """A batch of BGR uint8 images ``[H, W, 3]``, each optionally with
    prompt boxes (``prompts[i]``: ``[N, 4]`` x1, y1, x2, y2, prompt-type
    label 1 as the predictor gives clicks and boxes)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        inputs.append(torch.from_numpy(img).permute(2, 0, 1).contiguous())
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1., 1.)))
        if prompts is not None:
            boxes = torch.as_tensor(prompts[i], dtype=torch.float32)
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes,
                pb_labels=torch.ones(len(boxes), dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def video_batch(frames: np.ndarray) -> dict:
    """A batch of one clip: ``frames`` is ``[T, H, W, 3]`` BGR uint8; one
    ``TrackDataSample`` holding a ``DetDataSample`` per frame."""
    from mmdet.structures import DetDataSample, TrackDataSample
    t, h, w = frames.shape[:3]
    samples = [
        DetDataSample(
            metainfo=dict(
                img_id=i,
                frame_id=i,
                video_length=t,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1., 1.))) for i in range(t)
    ]
    inputs = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    return dict(
        inputs=[inputs],
        data_samples=[TrackDataSample(video_data_samples=samples)])
