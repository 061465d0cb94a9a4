"""Video instance segmentation in bounded memory: frames are read, resized
and segmented one chunk at a time, and the model's clip-to-clip query
matching carries on from chunk to chunk, so tracks keep their ids."""
import os
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample, TrackDataSample
from torch import Tensor

from rap_sam.models.detectors import RapSAMVideo
from rap_sam.models.tracking import ClipLinker
from .inputs import InputError, check_int, iter_frames


def _chunks(frames, size: int) -> Iterator[Tuple[list, bool]]:
    """Lists of up to ``size`` frames, each with whether more follow.

    When a frame cannot be read (a file cut short, a bad frame in a
    folder), the frames read before it come first, as the video's last
    chunk: the caller gets their results, then the error."""
    frames = iter(frames)
    chunk, upcoming = [], next(frames, None)
    while upcoming is not None:
        chunk.append(upcoming)
        try:
            upcoming = next(frames, None)
        except InputError as err:
            yield chunk, False
            raise err
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


class VideoChunk(NamedTuple):
    """Consecutive frames of a video, ready for the model.

    Attributes:
        start (int): The first frame's index in the video.
        frames (list[np.ndarray]): The frames as read (original size).
        inputs (Tensor): ``[1, T, 3, H, W]``, resized as the predictor
            resizes and through the model's data preprocessor.
        samples (list[TrackDataSample]): The preprocessor's samples: one
            video of ``T`` frames.
        more (bool): Whether frames follow this chunk.
    """
    start: int
    frames: List[np.ndarray]
    inputs: Tensor
    samples: list
    more: bool

    @property
    def whole_video(self) -> bool:
        """The chunk is the whole video: the model's own cut applies."""
        return self.start == 0 and not self.more

    def clip(self, start: int, end: int) -> Tuple[Tensor, list]:
        """Frames ``start:end`` of the chunk: their model inputs and samples
        (what :meth:`ClipLinker.link_clips` reads a clip with)."""
        return self.inputs[:, start:end], [
            TrackDataSample(video_data_samples=s[start:end])
            for s in self.samples
        ]

    def link(self, model, linker: ClipLinker) -> Iterator[tuple]:
        """The chunk's clips, cut as the model cuts them, each linked to the
        tracks so far (a new window of ``linker``): ``(start, end, samples,
        feats, outputs)`` per clip as :meth:`ClipLinker.link_clips` gives
        them, the clip's frames being ``self.frames[start:end]``."""
        return linker.link_clips(model, self.clip, len(self.frames),
                                 self.whole_video)


def video_chunks(predictor, video, chunk_frames: int) -> Iterator[VideoChunk]:
    """``video`` read ``chunk_frames`` frames at a time (in bounded memory),
    each chunk resized and preprocessed for ``predictor.model``. The first
    frame's size is checked before the model runs."""
    model, start = predictor.model, 0
    for frames, more in _chunks(
            iter_frames(video, predictor.max_pixels), chunk_frames):
        if start == 0:
            predictor.check_resizable(*frames[0].shape[:2])
        data = model.data_preprocessor(
            _clip_batch(predictor, frames, start), False)
        yield VideoChunk(start, frames, data['inputs'], data['data_samples'],
                         more)
        start += len(frames)


def clip_linker(model) -> ClipLinker:
    """The model's linker; a model without clips of its own (an image
    config) links with :class:`ClipLinker`'s defaults, which are those of
    the video configs."""
    if isinstance(model, RapSAMVideo):
        return model.clip_linker()
    return ClipLinker()


#: Memory a chunk holds per pixel of each frame at the model's input size,
#: about: the frame, its features and the queries' masks until the chunk is
#: linked. Measured 180-200 bytes (iter_video, 640x368 and 1280x736,
#: 2026-12-03); the check below takes less, so that it refuses only chunks
#: that cannot fit.
CHUNK_BYTES_PER_PIXEL = 128


def _read_number(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _inactive_file(stat_path: str) -> int:
    """Reclaimable page cache a cgroup's usage counts (docker's stats take
    it off the usage the same way)."""
    try:
        with open(stat_path) as f:
            for line in f:
                name, _, value = line.partition(' ')
                if name in ('inactive_file', 'total_inactive_file'):
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_memory_headroom(proc_cgroup: str = '/proc/self/cgroup',
                           root: str = '/sys/fs/cgroup') -> Optional[int]:
    """Bytes this process's memory cgroup (v1 or v2) and its parents still
    allow, None where none sets a limit. A container's limit is often far
    below the machine's ``MemAvailable``, and past it the process is killed
    as surely."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    places = []  # (folder of the hierarchy, limit file, usage file)
    for line in lines:
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == '':
            places.append((root, path, 'memory.max', 'memory.current'))
        elif 'memory' in controllers.split(','):
            places.append((os.path.join(root, 'memory'), path,
                           'memory.limit_in_bytes', 'memory.usage_in_bytes'))
    headroom = None
    for mount, path, limit_name, usage_name in places:
        # Inside a container the cgroup's path may not exist under the
        # mount, whose root is then the container's own cgroup.
        folder = os.path.join(mount, path.strip('/'))
        while True:
            limit = _read_number(os.path.join(folder, limit_name))
            usage = _read_number(os.path.join(folder, usage_name))
            # 'max' (v2) reads as no number; v1 says none with ~2**63.
            if limit is not None and usage is not None and limit < 2**60:
                used = usage - _inactive_file(
                    os.path.join(folder, 'memory.stat'))
                left = max(limit - max(used, 0), 0)
                headroom = left if headroom is None else min(headroom, left)
            if os.path.normpath(folder) == os.path.normpath(mount):
                break
            folder = os.path.dirname(folder)
    return headroom


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation: Linux's
    ``MemAvailable`` (else the free pages), or less where the process's
    memory cgroup allows less; None where neither is known."""
    free = None
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')
        except (ValueError, OSError, AttributeError):
            pass
    headroom = cgroup_memory_headroom()
    if headroom is None:
        return free
    return headroom if free is None else min(free, headroom)


def check_chunk_frames(chunk_frames, scale: Tuple[int, int]) -> int:
    """``chunk_frames`` as a whole number >= 1 whose chunk fits in the
    memory available: a chunk's frames are segmented together, so a huge
    one (the whole of a long video) was killed by the system for memory,
    without a word.

    Args:
        chunk_frames: The frames per chunk asked for.
        scale (tuple): ``(w, h)`` the frames are resized to fit.

    Raises:
        InputError: not a whole number >= 1, or a chunk of about more bytes
            than are available (:data:`CHUNK_BYTES_PER_PIXEL` per pixel of
            ``scale``).
    """
    chunk_frames = check_int(chunk_frames, 'chunk_frames')
    free = available_memory()
    per_frame = CHUNK_BYTES_PER_PIXEL * scale[0] * scale[1]
    if free is not None and chunk_frames * per_frame > free:
        raise InputError(
            f'chunk_frames {chunk_frames} would hold about '
            f'{chunk_frames * per_frame / 2**30:.1f} GB at the {scale[0]}x'
            f'{scale[1]} scale ({per_frame / 2**20:.0f} MB a frame), more '
            f'than the {free / 2**30:.1f} GB available: give at most '
            f'{max(free // per_frame, 1)} (longer videos are tracked chunk '
            'by chunk, the tracks linked across chunks).')
    return chunk_frames


@torch.no_grad()
def track_video(
    predictor,
    video,
    chunk_frames: int = 30,
    score_thr: Optional[float] = None
) -> Iterator[Tuple[np.ndarray, DetDataSample]]:
    """See :meth:`RapSAMPredictor.iter_video`."""
    chunk_frames = check_chunk_frames(chunk_frames, predictor.scale)
    model = predictor.model
    linker = clip_linker(model)
    for chunk in video_chunks(predictor, video, chunk_frames):
        # A video read in one chunk is cut as the model cuts it
        # (test_step); the classes are a chunk's: results come out chunk by
        # chunk, and the tracks carry on.
        masks = [
            clip_masks.cpu()
            for *_, (_, clip_masks, _) in chunk.link(model, linker)
        ]
        cls_mean, iou_mean = linker.scores()
        results = model.predict_frames(cls_mean, torch.cat(masks, dim=2),
                                       iou_mean, chunk.samples, True)
        first = results[0][0].pred_track_instances
        ids = linker.track_ids(first.query_indices, first.labels)
        for frame, result in zip(chunk.frames, results[0]):
            instances = result.pred_track_instances
            instances.instances_id = ids.to(instances.labels.device)
            if score_thr is not None:
                result.pred_track_instances = instances[instances.scores >=
                                                        score_thr]
            yield frame, result
