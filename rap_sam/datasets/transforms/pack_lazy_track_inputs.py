from typing import Optional, Sequence

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample, TrackDataSample
from mmengine.structures import InstanceData

from .lazy_video import LazyVideo

# PackTrackInputs' default metainfo keys
TRACK_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'frame_id',
                   'video_id', 'video_length', 'ori_video_length', 'instances')


@TRANSFORMS.register_module()
class PackLazyTrackInputs(BaseTransform):
    """Pack a test video for the model without reading its frames.

    Replaces ``TransformBroadcaster(transforms) + PackTrackInputs`` in the
    video-level test mode of mmdet's video datasets (one sample = one
    video): ``inputs`` is a :class:`LazyVideo` that runs ``transforms`` on
    the frames of one clip when the model asks for it, instead of a
    ``[T, 3, H, W]`` tensor of the whole video (2.8 MB per 736 x 1280
    frame, all in memory at once). The data samples carry the frames'
    metainfo; the keys the transforms set (``img_shape``, ``scale_factor``,
    and ``ori_shape``, first taken from the annotation's ``height`` and
    ``width``) are set when the frame is read. The ground truth
    stays in the metainfo's ``instances``, where the video metrics read
    it; no ``gt_instances`` are loaded (the model does not use them in
    testing).

    Args:
        transforms (list[dict]): Per-frame transforms, e.g.
            ``LoadImageFromFile`` and ``Resize``.
        meta_keys (tuple[str], optional): Metainfo keys besides
            ``PackTrackInputs``' defaults.
    """

    def __init__(self,
                 transforms: Sequence[dict],
                 meta_keys: Optional[tuple] = None):
        self.transforms = [
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in transforms
        ]
        self.meta_keys = TRACK_META_KEYS + tuple(meta_keys or ())

    def transform(self, results: dict) -> dict:
        num = len(results['img_id'])
        frames = [{
            key: value[i]
            for key, value in results.items()
        } for i in range(num)]
        samples = []
        for frame in frames:
            sample = DetDataSample()
            sample.gt_instances = InstanceData()
            sample.ignored_instances = InstanceData()
            meta = {key: frame[key] for key in self.meta_keys if key in frame}
            if 'ori_shape' not in meta and 'height' in frame:
                # known before the frame is read (the metrics need it); the
                # read frame's own shape replaces it
                meta['ori_shape'] = (frame['height'], frame['width'])
            sample.set_metainfo(meta)
            samples.append(sample)
        video_id = frames[0].get('video_id') if frames else None
        return dict(
            inputs=LazyVideo(frames, self.transforms, self.meta_keys,
                             video_id),
            data_samples=TrackDataSample(video_data_samples=samples))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(transforms={self.transforms}, '
                f'meta_keys={self.meta_keys})')
