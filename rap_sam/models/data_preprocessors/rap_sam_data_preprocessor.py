from typing import Optional, Sequence

from mmdet.models.data_preprocessors import (DetDataPreprocessor,
                                             TrackDataPreprocessor)
from mmdet.registry import MODELS
from mmdet.structures import TrackDataSample


@MODELS.register_module()
class RapSAMDataPreprocessor(DetDataPreprocessor):
    """Normalises and pads images and video clips for RAP-SAM.

    Images (``DetDataSample``) go through mmdet's ``DetDataPreprocessor``;
    clips (``TrackDataSample``, inputs ``[T, 3, H, W]``) through mmdet's
    ``TrackDataPreprocessor`` built with the same settings. Inputs that are
    not 3-channel are refused with a message saying so.

    Training batches come in three kinds, one per batch: clips (panoptic
    images as 1-frame clips and video clips: masks padded per frame) and
    prompt images (masks padded; the prompts in ``gt_instances_collected``
    stay in ``img_shape`` pixels, which padding does not move). A batch
    mixing clips and images is refused.
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 **kwargs):
        super().__init__(mean=mean, std=std, **kwargs)
        self.track_preprocessor = TrackDataPreprocessor(
            mean=mean, std=std, **kwargs)

    def forward(self, data: dict, training: bool = False) -> dict:
        for inputs in data['inputs']:
            channels = inputs.shape[-3] if inputs.dim() >= 3 else None
            if channels != 3:
                raise ValueError(
                    'RAP-SAM needs 3-channel (BGR) images; got an input of '
                    f'shape {tuple(inputs.shape)}. Load images in colour '
                    "(LoadImageFromFile(color_type='color')) or convert "
                    'them before inference.')
        samples = data.get('data_samples')
        if samples and len({isinstance(s, TrackDataSample)
                            for s in samples}) > 1:
            raise ValueError(
                'A batch mixes clips (TrackDataSample) and images; batch '
                'training data with SourceAspectRatioBatchSampler so each '
                'batch holds one kind of sample.')
        if samples and isinstance(samples[0], TrackDataSample):
            return self.track_preprocessor(data, training)
        return super().forward(data, training)
