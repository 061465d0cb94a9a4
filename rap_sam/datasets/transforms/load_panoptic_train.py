from mmdet.registry import TRANSFORMS

from .panoptic_segments import PanopticSegmentLoader


@TRANSFORMS.register_module()
class LoadPanopticTrainAnnotations(PanopticSegmentLoader):
    """Every non-crowd panoptic segment, thing or stuff, as one instance.

    RAP-SAM's object queries predict stuff and things alike and prompts may
    fall on either, so both become mask instances (mmdet's
    ``LoadPanopticAnnotations`` keeps things as instances and stuff only in
    a semantic map). Crowd regions (a thing category whose segment is not
    ``is_thing``) are left out: no query is asked to find them, as in
    Mask2Former.

    Adds ``gt_masks`` (BitmapMasks), ``gt_bboxes`` (boxes of the masks),
    ``gt_bboxes_labels`` (contiguous labels: things, then stuff) and
    ``gt_ignore_flags`` (all False). Geometric transforms that follow
    (flip, resize, crop) keep them aligned. Segments missing from the PNG
    are left out, with one warning per PNG; a PNG holding none of the
    listed segments, crowd regions included (a PNG holding only its crowd
    regions is this annotation's), raises
    :class:`~rap_sam.datasets.data_checks.SampleContentError`, which
    ``ConcatOVDataset`` counts as a bad file and skips.
    """

    def transform(self, results: dict) -> dict:
        listed = results.get('segments_info', [])
        segments = [
            s for s in listed
            if s['is_thing'] or s['category'] >= self.num_thing_classes
        ]
        self.load_instances(results, segments, listed)
        return results
