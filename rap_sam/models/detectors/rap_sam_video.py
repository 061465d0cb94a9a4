from typing import Callable, List

import numpy as np
import pycocotools.mask as mask_util
import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList, TrackDataSample
from torch import Tensor

from ..tracking import ClipLinker, QueryMaskSpill
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
    the video's length beyond the results themselves: ``test_step`` reads
    (a :class:`~rap_sam.datasets.LazyVideo` from the yt19 pipeline) or
    slices the frames and normalises them one clip at a time, and each
    clip's frames are post-processed as soon as the clip is linked, every
    query's mask encoded as a COCO RLE with its box and mask score, the
    RLEs spilt to a temporary file (:class:`QueryMaskSpill`); once the whole
    video's class scores are known, each frame's instances are picked from
    these and only their RLEs read back. The results are those of fusing
    the whole video's logits at the end (what is kept is exactly what the
    fusion head would compute then).

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
            inputs = []
            for video, sample in zip(data['inputs'], samples):
                if not hasattr(video, 'read_clip'):
                    inputs.append(video[start:end])
                    continue
                # A LazyVideo (the yt19 data path): the frames are read
                # now, and their sizes known.
                frames, metas = video.read_clip(start, end)
                for frame, meta in zip(sample[start:end], metas):
                    frame.set_metainfo(meta)
                inputs.append(frames)
            data_clip = dict(
                inputs=inputs,
                data_samples=[
                    TrackDataSample(video_data_samples=s[start:end])
                    for s in samples
                ])
            data_clip = self.data_preprocessor(data_clip, False)
            # The preprocessor's samples (new objects, with the metainfo it
            # set) are the frames the results go in.
            for sample, clip_sample in zip(samples, data_clip['data_samples']):
                sample.video_data_samples[start:end] = \
                    clip_sample.video_data_samples
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
        """``clip(start, end)`` gives a clip's model inputs and samples,
        which are ``samples``' frames (the results are written in these)."""
        linker = self.clip_linker()
        streamed = self.test_cfg.get('instance_on', False) and \
            not self.test_cfg.get('panoptic_on', True)
        if not streamed:
            return self._predict_video_logits(linker, clip, num_frames,
                                              samples, rescale)
        with QueryMaskSpill() as spill:
            return self._predict_video_streamed(linker, clip, num_frames,
                                                samples, rescale, spill)

    def _predict_video_logits(self, linker: ClipLinker, clip: Callable,
                              num_frames: int, samples: List[TrackDataSample],
                              rescale: bool) -> SampleList:
        """Every clip's mask logits kept to the end (panoptic results)."""
        kept = [
            masks.cpu()
            for _, _, _, _, (_, masks,
                             _) in linker.link_clips(self, clip, num_frames)
        ]
        cls_scores, ious = linker.scores()
        return self.predict_frames(cls_scores, torch.cat(kept, dim=2), ious,
                                   samples, rescale)

    def _predict_video_streamed(self, linker: ClipLinker, clip: Callable,
                                num_frames: int,
                                samples: List[TrackDataSample], rescale: bool,
                                spill: QueryMaskSpill) -> SampleList:
        """Each frame's query masks made as soon as its clip is linked, their
        RLEs spilt to disk until the video's classes choose the
        instances."""
        fusion = self.panoptic_fusion_head
        for start, end, clip_samples, _, outputs in linker.link_clips(
                self, clip, num_frames):
            # Rebinding ``_`` drops the clip's features before its masks
            # are post-processed.
            cls_scores, masks, _ = outputs
            size = tuple(clip_samples[0][0].metainfo['batch_input_shape'])
            for t in range(end - start):
                for b, sample in enumerate(clip_samples):
                    spill.add(
                        fusion.predict_query_masks(
                            masks[b, :, t].to(cls_scores.device),
                            sample[t].metainfo, size, rescale))
        cls_scores, _ = linker.scores()
        selections = [fusion.select_instances(c) for c in cls_scores]
        dense = not self.test_cfg.get('rle_masks', False)
        for t in range(num_frames):
            for b, selection in enumerate(selections):
                index = t * len(samples) + b
                instances = fusion.gather_instances(
                    selection, spill.get(index, selection.query_indices))
                spill.drop(index)
                # Instance ranking depends on the video's classes only, so
                # rank r is the same track in every frame.
                instances.instances_id = torch.arange(
                    len(instances), device=instances.labels.device) + 1
                if dense:
                    instances.masks = self._decode(instances.masks,
                                                   samples[b][t], rescale,
                                                   instances.labels.device)
                samples[b][t].pred_track_instances = instances
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
