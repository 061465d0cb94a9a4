"""Video instance segmentation in bounded memory: frames are read, resized
and segmented one chunk at a time, and the model's clip-to-clip query
matching carries on from chunk to chunk, so tracks keep their ids."""
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample, TrackDataSample

from rap_sam.models.detectors import RapSAMVideo
from rap_sam.models.tracking import ClipLinker
from .inputs import check_int, iter_frames


def _chunks(frames, size: int) -> Iterator[Tuple[list, bool]]:
    """Lists of up to ``size`` frames, each with whether more follow."""
    frames = iter(frames)
    chunk, upcoming = [], next(frames, None)
    while upcoming is not None:
        chunk.append(upcoming)
        upcoming = next(frames, None)
        if len(chunk) == size or upcoming is None:
            yield chunk, upcoming is not None
            chunk = []


def _clip_batch(predictor, frames: List[np.ndarray], start: int) -> dict:
    """A ``test_step`` batch of one clip, resized as the predictor does."""
    inputs, samples = [], []
    for i, frame in enumerate(frames):
        resized = predictor.resize(dict(img=frame))
        inputs.append(torch.from_numpy(resized['img']).permute(2, 0, 1))
        samples.append(
            DetDataSample(
                metainfo=dict(
                    img_id=start + i,
                    frame_id=start + i,
                    ori_shape=frame.shape[:2],
                    img_shape=resized['img_shape'],
                    scale_factor=resized['scale_factor'])))
    return dict(
        inputs=[torch.stack(inputs)],
        data_samples=[TrackDataSample(video_data_samples=samples)])


def clip_linker(model) -> ClipLinker:
    """The model's linker; a model without clips of its own (an image
    config) links with :class:`ClipLinker`'s defaults, which are those of
    the video configs."""
    if isinstance(model, RapSAMVideo):
        return model.clip_linker()
    return ClipLinker()


@torch.no_grad()
def track_video(
    predictor,
    video,
    chunk_frames: int = 30,
    score_thr: Optional[float] = None
) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
    """See :meth:`RapSAMPredictor.iter_video`."""
    chunk_frames = check_int(chunk_frames, 'chunk_frames')
    model = predictor.model
    linker, start = clip_linker(model), 0
    stream = iter_frames(video, predictor.max_pixels)
    for frames, more in _chunks(stream, chunk_frames):
        if start == 0:
            predictor.check_resizable(*frames[0].shape[:2])
        data = model.data_preprocessor(
            _clip_batch(predictor, frames, start), False)
        inputs, samples = data['inputs'], data['data_samples']
        # A video read in one chunk is cut as the model cuts it
        # (test_step); the classes are a chunk's: results come out chunk by
        # chunk, and the tracks carry on.
        linker.new_window()
        masks = []
        for s, e in linker.clips(
                len(frames), whole_video=start == 0 and not more):
            clip = [TrackDataSample(video_data_samples=samples[0][s:e])]
            _, clip_masks, _ = linker.link(
                *model._clip_outputs(model.extract_feat(inputs[:, s:e]), clip))
            masks.append(clip_masks.cpu())
        cls_mean, iou_mean = linker.scores()
        results = model.predict_frames(cls_mean, torch.cat(masks, dim=2),
                                       iou_mean, samples, True)
        first = results[0][0].pred_track_instances
        ids = linker.track_ids(first.query_indices, first.labels)
        for frame, result in zip(frames, results[0]):
            instances = result.pred_track_instances
            instances.instances_id = ids.to(instances.labels.device)
            if score_thr is not None:
                result.pred_track_instances = instances[instances.scores >=
                                                        score_thr]
            yield frame, result
        start += len(frames)
