import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmengine.structures import InstanceData


@TRANSFORMS.register_module()
class PackPromptInputs(PackDetInputs):
    """``PackDetInputs`` plus the prompts of ``GenerateSegmentPrompts``.

    The data sample gets ``gt_instances_collected``, an ``InstanceData`` with
    one row per prompt:

    - ``point_coords`` float [N, 4]: x1, y1, x2, y2 in ``img_shape`` pixels;
      a click is its 6-px box, a box prompt the segment's box;
    - ``pb_labels`` long [N]: all ones (the prompt embedding index the
      released model uses for clicks and boxes alike);
    - ``is_box`` / ``is_thing`` bool [N], ``labels`` long [N] (contiguous
      class), ``segment_ids`` long [N] (ids in the panoptic PNG);
    - ``ori_masks``: list of N COCO RLE dicts, the segment masks at the
      original resolution (``ori_shape``), read by ``InteractiveMetric``.

    ``metainfo['num_skipped_prompts']`` counts segments left without a
    prompt because they vanished in the resize.
    """

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        boxes = torch.from_numpy(results['prompt_boxes']).float()
        num = len(boxes)
        packed['data_samples'].gt_instances_collected = InstanceData(
            point_coords=boxes,
            pb_labels=torch.ones(num, dtype=torch.long),
            is_box=torch.from_numpy(results['prompt_is_box']),
            is_thing=torch.from_numpy(results['prompt_is_thing']),
            labels=torch.from_numpy(results['prompt_labels']).long(),
            segment_ids=torch.from_numpy(results['prompt_segment_ids']).long(),
            ori_masks=list(results['prompt_masks_rle']))
        packed['data_samples'].set_metainfo(
            dict(num_skipped_prompts=int(results['num_skipped_prompts'])))
        return packed
