from typing import Callable, List

import numpy as np
import pycocotools.mask as mask_util
import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList, TrackDataSample
from torch import Tensor

from ..tracking import ClipLinker
from .rap_sam import RapSAM


@MODELS.register_module()
class RapSAMVideo(RapSAM):
    """RAP-SAM on whole videos, MinVIS-style.

    A video is cut into short clips (``clip_size`` frames, or
    ``clip_size_small`` for videos of at most ``small_video_frames``); within
    a clip the queries are mask tubes, and a :class:`ClipLinker` links
    consecutive clips by Hungarian matching of their queries. A track's
    class is its query's class logits averaged over the video's clips.

    The instance results (``test_cfg.instance_on`` without ``panoptic_on``,
    the YouTube-VIS evaluation) are made in memory that does not grow with
    the video's length beyond the results themselves: ``test_step``
    normalises the frames one clip at a time, and each clip's frames are
    post-processed as soon as the clip is linked, every query's mask
    encoded as a COCO RLE with its box and mask score; once the whole
    video's class scores are known, each frame's instances are picked from
    these. The results are those of fusing the whole video's logits at the
    end (what is kept is exactly what the fusion head would compute then).
    The uint8 video the dataloader hands over is still held whole.

    Panoptic video results need the whole video's class scores before any
    frame can be painted, so with ``panoptic_on`` the clips' mask logits at
    feature resolution are kept until the end (one small map per query and
    frame).

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

    def clip_linker(self) -> ClipLinker:
        """A linker for one video, with this model's clip sizes."""
        return ClipLinker(self.clip_size, self.clip_size_small,
                          self.small_video_frames)

    def test_step(self, data) -> list:
        """mmengine's ``test_step``; a video is normalised (and moved to
        the device) one clip at a time, not all at once."""
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if not samples or not isinstance(samples[0], TrackDataSample):
            return super().test_step(data)

        def clip(start: int, end: int) -> tuple:
            data_clip = dict(
                inputs=[video[start:end] for video in data['inputs']],
                data_samples=[
                    TrackDataSample(video_data_samples=s[start:end])
                    for s in samples
                ])
            data_clip = self.data_preprocessor(data_clip, False)
            return data_clip['inputs'], data_clip['data_samples']

        return self._predict_video(clip, len(samples[0]), samples, True)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        if not isinstance(batch_data_samples[0], TrackDataSample):
            return super().predict(batch_inputs, batch_data_samples, rescale)

        def clip(start: int, end: int) -> tuple:
            return batch_inputs[:, start:end], [
                TrackDataSample(video_data_samples=s[start:end])
                for s in batch_data_samples
            ]

        return self._predict_video(clip, batch_inputs.size(1),
                                   batch_data_samples, rescale)

    def _predict_video(self, clip: Callable[[int, int], tuple],
                       num_frames: int, samples: List[TrackDataSample],
                       rescale: bool) -> SampleList:
        """``clip(start, end)`` gives a clip's model inputs and samples
        (the frames' samples as the data preprocessor left them); the
        results are written in those, which replace ``samples``'
        frames."""
        linker = self.clip_linker()
        fusion = self.panoptic_fusion_head
        streamed = self.test_cfg.get('instance_on', False) and \
            not self.test_cfg.get('panoptic_on', True)
        frames: List[list] = [[] for _ in samples]
        # Without streaming: every clip's logits; with it: every frame's
        # query masks (RLEs, boxes, mask scores), per video.
        kept: list = []
        for start, end in linker.clips(num_frames):
            inputs, clip_samples = clip(start, end)
            for video, clip_sample in zip(frames, clip_samples):
                video.extend(clip_sample.video_data_samples)
            cls_scores, masks, _ = linker.link(
                *self._clip_outputs(self.extract_feat(inputs), clip_samples))
            del inputs
            if not streamed:
                kept.append(masks.cpu())
                continue
            size = tuple(clip_samples[0][0].metainfo['batch_input_shape'])
            for t in range(end - start):
                kept.append([
                    fusion.predict_query_masks(
                        masks[b, :, t].to(cls_scores.device),
                        sample[t].metainfo, size, rescale)
                    for b, sample in enumerate(clip_samples)
                ])
        for sample, video in zip(samples, frames):
            sample.video_data_samples = video
        cls_scores, ious = linker.scores()
        if not streamed:
            return self.predict_frames(cls_scores, torch.cat(kept, dim=2),
                                       ious, samples, rescale)
        selections = [fusion.select_instances(c) for c in cls_scores]
        dense = not self.test_cfg.get('rle_masks', False)
        for t, frame in enumerate(kept):
            for b, query_masks in enumerate(frame):
                instances = fusion.gather_instances(selections[b], query_masks)
                # Instance ranking depends on the video's classes only, so
                # rank r is the same track in every frame.
                instances.instances_id = torch.arange(
                    len(instances), device=instances.labels.device) + 1
                if dense:
                    instances.masks = self._decode(instances.masks,
                                                   samples[b][t], rescale,
                                                   instances.labels.device)
                samples[b][t].pred_track_instances = instances
            kept[t] = None  # the frame's query masks are done with
        return samples

    @staticmethod
    def _decode(rles: list, sample, rescale: bool, device) -> Tensor:
        """COCO RLEs -> ``[n, h, w]`` bool masks (for results without
        ``test_cfg.rle_masks``: the same masks, lossless)."""
        if rles:
            masks = mask_util.decode(rles).transpose(2, 0, 1)
        else:
            key = 'ori_shape' if rescale else 'img_shape'
            masks = np.zeros((0, ) + tuple(sample.metainfo[key][:2]), bool)
        return torch.from_numpy(masks.astype(bool)).to(device)
