"""Click-to-track: a prompt on one frame, its object's mask in every frame.

RAP-SAM has no memory of past frames to propagate a prompt with (SAM 2's
mechanism); what it has is object queries linked into tracks through the
whole video (:class:`~rap_sam.models.tracking.ClipLinker`). So a prompt is
answered in two steps, both with the model's own outputs:

1. on the prompted frame, the prompt decoder gives the prompt's mask (what
   ``predict_prompts`` gives on that image), and the object query whose
   mask on that frame overlaps it most (IoU at feature resolution, times
   the query's foreground class score: of two queries on one object, the
   duplicate scored as background is not the track that followed it) is
   the prompted object's track;
2. that track's mask is read in every frame, before the prompted frame as
   after it: the linker orders every clip's queries by the first clip's,
   so a query is one object from the first frame to the last.

The prompted frame itself shows the prompt's own mask, so a click gets the
same answer as on a single image. Frames are read clip by clip and only
the tracked objects' masks leave each clip, so memory does not grow with
the video's length (beyond the returned masks). A prompt on a frame after
the first clip needs the track chosen before the earlier frames can be
given out: the video is then read twice (a first pass up to the prompted
frame to choose the track, a second that gives the results; the linking is
deterministic, so both passes see the same tracks).
"""
from collections.abc import Iterator as IteratorABC
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData
from torch import Tensor

from rap_sam.models.layers import FeatureMap
from rap_sam.models.utils import clicks_to_boxes
from .inputs import InputError, check_prompts, iter_frames
from .video import check_chunk_frames, clip_linker, video_chunks


class FramePastEndError(InputError):
    """The prompted frame is past the video's last frame. The message names
    the frame the way its caller was given it: ``frame_index`` to the API,
    the option a command-line user typed (:meth:`named`)."""

    def __init__(self,
                 frame_index: int,
                 num_frames: int,
                 argument: str = 'frame_index'):
        self.frame_index, self.num_frames = frame_index, num_frames
        self.argument = argument
        super().__init__(f"{argument} {frame_index} is past the video's "
                         f'last frame (it has {num_frames} frames; 0 is the '
                         'first).')

    def __reduce__(self):
        # Exception pickles its message alone; __init__ takes the parts.
        return type(self), (self.frame_index, self.num_frames, self.argument)

    def named(self, argument: str) -> 'FramePastEndError':
        """The same error, its message naming the frame ``argument`` (e.g.
        ``--frame``)."""
        return type(self)(self.frame_index, self.num_frames, argument)


class LinkedClip(NamedTuple):
    """One linked clip: its first frame's index in the video, its frames,
    their samples (as the data preprocessor left them), the neck's features
    ``[T, C, h, w]`` and the mask logits ``[N, T, h, w]`` of every query in
    track order."""
    start: int
    frames: List[np.ndarray]
    samples: list
    feats: FeatureMap
    masks: Tensor
    cls_scores: Tensor

    def __contains__(self, index: int) -> bool:
        return self.start <= index < self.start + len(self.frames)


class PromptTarget(NamedTuple):
    """What step 1 found: the prompts' decoder outputs on the prompted
    frame (``[1, P, ...]``) and, per prompt, its track (query index) and
    the IoU of the prompt's mask with that track's mask there."""
    cls_scores: Tensor
    masks: Tensor
    ious: Tensor
    queries: Tensor
    match_ious: Tensor


def scale_prompts(points: np.ndarray, boxes: np.ndarray, scale_factor,
                  device) -> Tensor:
    """Checked prompts in original-image pixels as the model's ``[N, 4]``
    boxes at the resized scale: the points first (each as the 6-pixel box
    around it, the form the released model was trained with), then the
    boxes. ``scale_factor`` is Resize's ``(w_scale, h_scale)``."""
    sx, sy = scale_factor[:2]
    points = torch.from_numpy(points) * torch.tensor([sx, sy])
    boxes = torch.from_numpy(boxes) * torch.tensor([sx, sy, sx, sy])
    return torch.cat([clicks_to_boxes(points), boxes]).to(device)


def linked_clips(predictor, video, chunk_frames: int) -> Iterator[LinkedClip]:
    """The video's clips as :func:`rap_sam.apis.video.track_video` cuts
    and links them (the same chunks, clips and track order)."""
    model = predictor.model
    linker = clip_linker(model)
    for chunk in video_chunks(predictor, video, chunk_frames):
        for s, e, samples, feats, outputs in chunk.link(model, linker):
            cls_scores, masks, _ = outputs
            yield LinkedClip(chunk.start + s, chunk.frames[s:e],
                             samples[0].video_data_samples, feats, masks[0],
                             cls_scores[0])


def _prompt_sample(sample, boxes: Tensor) -> DetDataSample:
    prompt = DetDataSample(metainfo=sample.metainfo)
    prompt.gt_instances_collected = InstanceData(
        point_coords=boxes,
        pb_labels=torch.ones(
            len(boxes), dtype=torch.long, device=boxes.device))
    return prompt


def _valid(masks: Tensor, metainfo: dict) -> Tensor:
    """``masks [..., h, w]`` (padded input's feature map) cropped to the
    image: the padding is no object's."""
    pad_h, pad_w = metainfo['batch_input_shape']
    img_h, img_w = metainfo['img_shape'][:2]
    h, w = masks.shape[-2:]
    return masks[..., :-(-h * img_h // pad_h), :-(-w * img_w // pad_w)]


def match_tracks(prompt_masks: Tensor,
                 query_masks: Tensor,
                 query_scores: Optional[Tensor] = None) -> tuple:
    """Per prompt, the query whose mask overlaps the prompt's most, its
    IoU weighted by ``query_scores`` when given.

    Args:
        prompt_masks (Tensor): ``[P, h, w]`` prompt mask logits.
        query_masks (Tensor): ``[N, h, w]`` the queries' on the same frame.
        query_scores (Tensor, optional): ``[N]`` how sure the model is that
            each query is an object.

    Returns:
        tuple: ``[P]`` query indices and their IoUs (ties: the lowest
        index).
    """
    prompts = (prompt_masks > 0).flatten(1).float()
    queries = (query_masks > 0).flatten(1).float()
    inter = prompts @ queries.T
    union = prompts.sum(1, keepdim=True) + queries.sum(1) - inter
    ious = inter / union.clamp(min=1)
    ranks = ious if query_scores is None else ious * query_scores
    index = ranks.argmax(1)
    return index, ious.gather(1, index[:, None])[:, 0]


def find_target(model, clip: LinkedClip, frame_index: int,
                boxes: Tensor) -> PromptTarget:
    """Step 1 on the prompted frame of ``clip``."""
    t = frame_index - clip.start
    sample = clip.samples[t]
    cls_scores, masks, ious, _ = model.predict_head(
        clip.feats[t:t + 1], [_prompt_sample(sample, boxes)])
    # Several queries can cover one object in a clip (the duplicates a
    # set-prediction model scores as background); the one the model is
    # sure of is the track that has followed the object from clip to clip.
    objectness = clip.cls_scores.softmax(-1)[:, :-1].max(-1).values
    queries, match_ious = match_tracks(
        _valid(masks[0], sample.metainfo),
        _valid(clip.masks[:, t], sample.metainfo), objectness)
    return PromptTarget(cls_scores, masks, ious, queries, match_ious)


def frame_result(model, target: PromptTarget, clip: LinkedClip, t: int,
                 prompted: bool) -> DetDataSample:
    """Frame ``t`` of ``clip``: the tracked objects' masks at the frame's
    size (the prompt's own on the prompted frame), with the prompts'
    classes."""
    sample = clip.samples[t]
    masks = target.masks if prompted else \
        clip.masks[target.queries, t][None].to(target.masks.device)
    # The prompt decoder's upsampling (to the padded input, cropped, to
    # the original size), so the prompted frame is predict_prompts'.
    result = DetDataSample(metainfo=sample.metainfo)
    pred = model.add_prompt_preds(target.cls_scores, masks, target.ious,
                                  [result], True)[0].pred_instances
    result.pred_track_instances = InstanceData(
        masks=pred.masks,
        bboxes=mask2bbox(pred.masks),
        labels=pred.labels,
        scores=pred.scores,
        instances_id=torch.arange(1, len(pred) + 1, device=pred.labels.device),
        query_indices=target.queries,
        match_ious=target.match_ious)
    del result.pred_instances
    return result


def _rereadable(video) -> bool:
    """Whether reading ``video`` again gives its frames again."""
    return not isinstance(video, IteratorABC)


def track_prompt(
        predictor,
        video,
        frame_index: int,
        points=None,
        boxes=None,
        chunk_frames: int = 30) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
    """See :meth:`RapSAMPredictor.iter_track_prompt`."""
    whole = isinstance(
        frame_index, (int, np.integer)) and not isinstance(frame_index, bool)
    if not whole or frame_index < 0:
        raise InputError('frame_index must be a whole number >= 0 (the '
                         f'prompted frame, 0 is the first), got '
                         f'{frame_index!r}.')
    frame_index = int(frame_index)
    chunk_frames = check_chunk_frames(chunk_frames, predictor.scale)
    if isinstance(video, (int, np.integer)) or (isinstance(video, str)
                                                and '://' in video):
        raise InputError('track_prompt needs a recorded video (a file, a '
                         'folder of frames, an array or a list of frames), '
                         'not a camera or stream.')
    if not _rereadable(video):
        video = list(video)  # read twice below; a list holds its frames
    if hasattr(video, '__len__') and not isinstance(video, str) and \
            frame_index >= len(video):
        raise FramePastEndError(frame_index, len(video))
    # Checked on the first frame (iter_frames keeps the size), before the
    # model runs.
    first = next(iter_frames(video, predictor.max_pixels))
    points, boxes = check_prompts(points, boxes, first.shape[1],
                                  first.shape[0])
    return _track(predictor, video, frame_index, points, boxes, chunk_frames)


@torch.no_grad()
def _track(predictor, video, frame_index: int, points: np.ndarray,
           boxes: np.ndarray,
           chunk_frames: int) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
    model = predictor.model
    clips = linked_clips(predictor, video, chunk_frames)
    seen, target, first = 0, None, None
    for clip in clips:
        seen = clip.start + len(clip.frames)
        if frame_index in clip:
            prompts = scale_prompts(
                points, boxes,
                clip.samples[frame_index - clip.start].scale_factor,
                clip.feats.device)
            target = find_target(model, clip, frame_index, prompts)
            first = clip if clip.start == 0 else None
            break
    if target is None:
        raise FramePastEndError(frame_index, seen)
    if first is None:
        # Earlier clips were given up on: the second pass.
        clips.close()
        clips = linked_clips(predictor, video, chunk_frames)
        first = next(clips)
    clip = first
    while clip is not None:
        for t, frame in enumerate(clip.frames):
            yield frame, frame_result(model, target, clip, t,
                                      clip.start + t == frame_index)
        clip = next(clips, None)
