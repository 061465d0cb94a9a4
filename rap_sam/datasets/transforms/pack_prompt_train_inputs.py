import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmengine.structures import InstanceData


@TRANSFORMS.register_module()
class PackPromptTrainInputs(PackDetInputs):
    """``PackDetInputs`` plus the prompts of ``GenerateTrainPrompts``.

    ``gt_instances`` holds the segments (masks, labels, boxes);
    ``gt_instances_collected`` one row per prompt: ``point_coords`` [P, 4]
    boxes in ``img_shape`` pixels (a click as its 6-px box), ``pb_labels``
    (ones: the prompt embedding of the released model), ``idx`` (the
    segment in ``gt_instances`` that supervises it) and ``is_box``.
    ``metainfo['num_tiny_segments']`` counts segments too small to prompt.
    """

    def transform(self, results: dict) -> dict:
        if results['gt_ignore_flags'].any():
            raise ValueError(
                'PackPromptTrainInputs needs every segment kept as an '
                'instance (ignored ones would shift the prompt indices); '
                'drop segments instead of flagging them.')
        packed = super().transform(results)
        sample = packed['data_samples']
        num = len(results['prompt_boxes'])
        sample.gt_instances_collected = InstanceData(
            point_coords=torch.from_numpy(results['prompt_boxes']).float(),
            pb_labels=torch.ones(num, dtype=torch.long),
            idx=torch.from_numpy(results['prompt_indices']).long(),
            is_box=torch.from_numpy(results['prompt_is_box']))
        sample.set_metainfo(
            dict(num_tiny_segments=results.get('num_tiny_segments', 0)))
        return packed
