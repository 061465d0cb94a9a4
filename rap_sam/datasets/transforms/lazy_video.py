from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import Compose
from torch import Tensor

from ..data_checks import sample_load_error


class LazyVideo:
    """A video whose frames are read when a clip of them is asked for.

    What :class:`PackLazyTrackInputs` hands the model instead of the whole
    uint8 video: each frame's results (paths, ids) and the per-frame
    transforms (loading, resizing) that ``TransformBroadcaster`` would have
    run on every frame at once. The model reads one clip at a time
    (:meth:`read_clip`), so the evaluation's memory does not grow with the
    video's length; the frames are the same arrays, made by the same
    transforms, only later and in the model's process.

    Args:
        frames (list[dict]): Each frame's results, before the transforms.
        transforms (Sequence): The per-frame transforms (built).
        meta_keys (Sequence[str]): The keys that may go from a frame's
            transformed results to its data sample's metainfo.
        video_id: The video's id, for error messages.
    """

    def __init__(self,
                 frames: List[dict],
                 transforms: Sequence,
                 meta_keys: Sequence[str],
                 video_id=None):
        self.frames = frames
        self.transforms = Compose(list(transforms))
        self.meta_keys = tuple(meta_keys)
        self.video_id = video_id

    def __len__(self) -> int:
        return len(self.frames)

    def read_clip(self, start: int, end: int) -> Tuple[Tensor, List[dict]]:
        """Frames ``start:end`` as ``PackTrackInputs`` packs a video
        (``[t, 3, H, W]`` uint8) and, per frame, the metainfo the transforms
        made (``ori_shape``, ``img_shape``, ``scale_factor``...)."""
        images, metas = [], []
        for frame in self.frames[start:end]:
            try:
                results = self.transforms(dict(frame))
                if results is None:
                    raise RuntimeError('a frame transform dropped the frame')
            except Exception as err:
                raise sample_load_error(f'video {self.video_id}',
                                        f'(frame {frame.get("frame_id")})',
                                        [frame.get('img_path')], err) from err
            images.append(results.pop('img'))
            metas.append({
                key: results[key]
                for key in self.meta_keys
                if key in results and key not in frame
            })
        # PackTrackInputs' layout (a transposed view): the model gets the
        # very tensor that slicing the whole video would give.
        imgs = np.stack(images, axis=0).transpose(0, 3, 1, 2)
        return torch.from_numpy(imgs), metas
