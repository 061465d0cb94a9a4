import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList, TrackDataSample
from torch import Tensor

from ..utils import match_queries, split_video
from .rap_sam import RapSAM


@MODELS.register_module()
class RapSAMVideo(RapSAM):
    """RAP-SAM on whole videos, MinVIS-style.

    A video is cut into short clips (``clip_size`` frames, or
    ``clip_size_small`` for videos of at most ``small_video_frames``); within
    a clip the queries are mask tubes, and consecutive clips are linked by
    Hungarian matching of their queries. Features are computed one clip at a
    time and only mask logits at feature resolution are kept, so memory
    grows with the video's length by one small map per query and frame.

    Args:
        clip_size (int): Frames per clip for long videos.
        clip_size_small (int): Frames per clip for short videos.
        small_video_frames (int): Videos up to this length are short.
        **kwargs: :class:`RapSAM`'s arguments.
    """

    def __init__(self,
                 *args,
                 clip_size: int = 5,
                 clip_size_small: int = 3,
                 small_video_frames: int = 15,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.clip_size = clip_size
        self.clip_size_small = clip_size_small
        self.small_video_frames = small_video_frames

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        if not isinstance(batch_data_samples[0], TrackDataSample):
            return super().predict(batch_inputs, batch_data_samples, rescale)
        num_frames = batch_inputs.size(1)
        clip_size = (
            self.clip_size
            if num_frames > self.small_video_frames else self.clip_size_small)

        cls_sum, iou_sum, masks, previous = 0, 0, [], None
        clips = split_video(num_frames, clip_size)
        for start, end in clips:
            clip_samples = [
                TrackDataSample(video_data_samples=s[start:end])
                for s in batch_data_samples
            ]
            cls_scores, clip_masks, ious, queries = self._clip_outputs(
                self.extract_feat(batch_inputs[:, start:end]), clip_samples)
            if previous is not None:
                perms = [
                    match_queries(p, q) for p, q in zip(previous, queries)
                ]
                index = torch.stack(perms)
                cls_scores, clip_masks, ious, queries = (
                    torch.stack([x[i] for x, i in zip(tensor, index)])
                    for tensor in (cls_scores, clip_masks, ious, queries))
            previous = queries
            cls_sum = cls_sum + cls_scores
            iou_sum = iou_sum + ious
            masks.append(clip_masks.cpu())
        masks = torch.cat(masks, dim=2)
        return self.predict_frames(cls_sum / len(clips), masks,
                                   iou_sum / len(clips), batch_data_samples,
                                   rescale)
