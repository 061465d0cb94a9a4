"""Video instance segmentation in bounded memory: frames are read, resized
and segmented one chunk at a time, and the model's clip-to-clip query
matching carries on from chunk to chunk, so tracks keep their ids."""
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample, TrackDataSample

from rap_sam.models.utils import match_queries, split_video
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


def _instance_queries(fusion_head, cls_scores: torch.Tensor):
    """The query and class behind each instance the fusion head returns
    for ``cls_scores`` ``[N, K + 1]``, by redoing its top-k (mmdet's
    ``instance_postprocess``), which does not report them."""
    num_classes = fusion_head.num_classes
    scores = F.softmax(cls_scores, dim=-1)[:, :-1].flatten()
    top = scores.topk(
        fusion_head.test_cfg.get('max_per_image', 100), sorted=False).indices
    labels = top % num_classes
    keep = labels < fusion_head.num_things_classes
    return (top // num_classes)[keep], labels[keep]


class _TrackIds:
    """One id per (query, class) for the whole video: the queries of every
    chunk are matched to the previous chunk's, so query q is the same
    object throughout; a new class for it starts a new track."""

    def __init__(self):
        self.ids, self.count = {}, 0

    def __call__(self, queries, labels) -> torch.Tensor:
        out = []
        for key in zip(queries.tolist(), labels.tolist()):
            if key not in self.ids:
                self.count += 1
                self.ids[key] = self.count
            out.append(self.ids[key])
        return torch.tensor(out, dtype=torch.long)

    def fresh(self, n: int) -> torch.Tensor:
        """``n`` ids never used before."""
        self.count += n
        return torch.arange(self.count - n + 1, self.count + 1)


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
    fusion = model.panoptic_fusion_head
    clip_size = getattr(model, 'clip_size', 5)
    track_ids, previous, start = _TrackIds(), None, 0
    stream = iter_frames(video, predictor.max_pixels)
    for frames, more in _chunks(stream, chunk_frames):
        if start == 0:
            predictor.check_resizable(*frames[0].shape[:2])
        if start == 0 and not more and len(frames) <= getattr(
                model, 'small_video_frames', 15):
            # A short video is cut as the model cuts it (test_step).
            clip_size = getattr(model, 'clip_size_small', 3)
        data = model.data_preprocessor(
            _clip_batch(predictor, frames, start), False)
        inputs, samples = data['inputs'], data['data_samples']
        cls_sum, iou_sum, masks = 0, 0, []
        clips = split_video(len(frames), clip_size)
        for s, e in clips:
            clip = [TrackDataSample(video_data_samples=samples[0][s:e])]
            cls, clip_masks, ious, queries = model._clip_outputs(
                model.extract_feat(inputs[:, s:e]), clip)
            if previous is not None:
                perm = match_queries(previous[0], queries[0])
                cls, clip_masks, ious, queries = (
                    x[:, perm] for x in (cls, clip_masks, ious, queries))
            previous = queries
            cls_sum, iou_sum = cls_sum + cls, iou_sum + ious
            masks.append(clip_masks.cpu())
        cls_mean = cls_sum / len(clips)
        results = model.predict_frames(cls_mean, torch.cat(masks, dim=2),
                                       iou_sum / len(clips), samples, True)
        queries, labels = _instance_queries(fusion, cls_mean[0])
        first = results[0][0].pred_track_instances
        if torch.equal(labels.cpu(), first.labels.cpu()):
            ids = track_ids(queries, labels)
        else:  # a fusion head selecting otherwise: ids hold per chunk only
            ids = track_ids.fresh(len(first))
        for frame, result in zip(frames, results[0]):
            instances = result.pred_track_instances
            instances.instances_id = ids.to(instances.labels.device)
            if score_thr is not None:
                result.pred_track_instances = instances[instances.scores >=
                                                        score_thr]
            yield frame, result
        start += len(frames)
