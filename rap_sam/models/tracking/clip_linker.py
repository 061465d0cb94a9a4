from typing import Callable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from ..utils import match_queries, split_video


class ClipLinker:
    """Links the clips of one video into tracks, one clip at a time.

    MinVIS linking, as the released model was evaluated: each clip's
    queries are put in the order of the previous clip's (Hungarian matching
    of their embeddings' cosine), so query ``q`` is one object through the
    whole video. Only what the decisions over several clips need is kept:
    the last clip's queries, the sums of every query's class logits and
    IoU predictions over the clips of the current window (the whole video
    for the evaluation, a chunk of frames for the API), and the track ids
    handed out. So a caller can feed clips as they come (a file, a stream)
    and drop each one when done.

    Args:
        clip_size (int): Frames per clip.
        clip_size_small (int): Frames per clip of a whole video of at most
            ``small_video_frames`` frames.
        small_video_frames (int): Videos up to this length are short.
    """

    def __init__(self,
                 clip_size: int = 5,
                 clip_size_small: int = 3,
                 small_video_frames: int = 15):
        self.clip_size = clip_size
        self.clip_size_small = clip_size_small
        self.small_video_frames = small_video_frames
        self.previous: Optional[Tensor] = None
        self.track_of: dict = {}
        self.new_window()

    def clips(self,
              num_frames: int,
              whole_video: bool = True) -> List[Tuple[int, int]]:
        """``(start, end)`` of the clips of ``num_frames`` frames: a whole
        short video (``whole_video``) is cut in clips of
        ``clip_size_small``, anything else in clips of ``clip_size``."""
        short = whole_video and num_frames <= self.small_video_frames
        return split_video(num_frames,
                           self.clip_size_small if short else self.clip_size)

    def link_clips(self,
                   model,
                   clip: Callable[[int, int], tuple],
                   num_frames: int,
                   whole_video: bool = True) -> Iterator[tuple]:
        """A new window of ``num_frames`` frames through ``model``, clip by
        clip as :meth:`clips` cuts it, each clip linked to the tracks so far
        (the evaluation's whole video and the API's chunks both go through
        here).

        Args:
            model (RapSAM): Gives a clip's features (``extract_feat``) and
                outputs (``_clip_outputs``).
            clip (Callable): ``clip(start, end)`` gives those frames' model
                inputs ``[B, T, 3, H, W]`` (preprocessed) and their
                ``TrackDataSample`` s, read when asked for.
            num_frames (int): Frames in the window.
            whole_video (bool): Whether the window is the whole video.

        Yields:
            tuple: ``(start, end, samples, feats, outputs)`` per clip: its
            frames, its samples, the neck's features (``extract_feat``'s,
            ``[B * T, C, h, w]``) and :meth:`link`'s outputs (class logits,
            mask logits and IoUs of every query, in track order). The
            window's means are :meth:`scores` once the clips are done.
        """
        self.new_window()
        for start, end in self.clips(num_frames, whole_video):
            # Nothing of a clip stays referenced here once it is handed
            # out: the caller decides how long its features live (the
            # evaluation drops them at once, click-to-track keeps them).
            yield (start, end) + self._link_clip(model, *clip(start, end))

    def _link_clip(self, model, inputs: Tensor, samples: list) -> tuple:
        feats = model.extract_feat(inputs)
        return samples, feats, self.link(*model._clip_outputs(feats, samples))

    def new_window(self) -> None:
        """Start new class and IoU sums; the tracks carry on."""
        self.cls_sum, self.iou_sum, self.num_clips = 0, 0, 0

    def link(self, cls_scores: Tensor, masks: Tensor, ious: Tensor,
             queries: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The next clip's outputs in track order, summed into the window.

        Args:
            cls_scores (Tensor): ``[B, N, K + 1]`` class logits.
            masks (Tensor): ``[B, N, T, h, w]`` mask logits.
            ious (Tensor): ``[B, N, 1]`` IoU predictions.
            queries (Tensor): ``[B, N, C]`` query embeddings.

        Returns:
            tuple: ``cls_scores``, ``masks`` and ``ious``, with query ``q``
            of every video the track of the previous clips' query ``q``.
        """
        if self.previous is not None:
            index = torch.stack(
                [match_queries(p, q) for p, q in zip(self.previous, queries)])
            cls_scores, masks, ious, queries = (
                torch.stack([x[i] for x, i in zip(tensor, index)])
                for tensor in (cls_scores, masks, ious, queries))
        self.previous = queries
        self.cls_sum = self.cls_sum + cls_scores
        self.iou_sum = self.iou_sum + ious
        self.num_clips += 1
        return cls_scores, masks, ious

    def scores(self) -> Tuple[Tensor, Tensor]:
        """The window's mean class logits ``[B, N, K + 1]`` and IoU
        predictions ``[B, N, 1]`` per track."""
        if not self.num_clips:
            raise RuntimeError('no clip linked in this window yet')
        return self.cls_sum / self.num_clips, self.iou_sum / self.num_clips

    def track_ids(self, query_indices: Tensor, labels: Tensor) -> Tensor:
        """One id (from 1) per (track, class) for the whole video: a query
        whose class changes from one window to the next starts a new
        track, so an id always means one class."""
        ids = []
        for key in zip(query_indices.tolist(), labels.tolist()):
            ids.append(self.track_of.setdefault(key, len(self.track_of) + 1))
        return torch.tensor(ids, dtype=torch.long, device=labels.device)
