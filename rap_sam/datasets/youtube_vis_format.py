"""Reading the official YouTube-VIS json without a conversion step.

mmdet's video datasets read COCO-video files (``images`` with ``video_id`` /
``frame_id``, one annotation per frame), made from the official json by
mmdet's ``youtubevis2coco.py``. :func:`official_to_coco_video` builds the
same structure in memory, so ``train.json`` / ``valid.json`` can be used as
they are downloaded.
"""
from collections import defaultdict

import pycocotools.mask as mask_utils

from .data_checks import DatasetContentError


def is_official_format(raw: dict) -> bool:
    videos = raw.get('videos') or []
    return 'images' not in raw and bool(videos) and 'file_names' in videos[0]


def _box_and_area(segm, height: int, width: int):
    """Box and area of a frame mask given as polygons or (un)compressed
    RLE, for files that leave out ``bboxes`` / ``areas``."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm['counts'], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return mask_utils.toBbox(rle).tolist(), float(mask_utils.area(rle))


def official_to_coco_video(raw: dict, source: str = 'annotation file') -> dict:
    """Official YouTube-VIS dict -> mmdet COCO-video dict.

    Image ids run from 1 over all frames, instance ids from 1 over all
    tracks (mmdet treats instance id 0 as missing); frames where a track is
    absent (``None``) get no annotation. Annotations of videos the file does
    not list raise :class:`DatasetContentError`.
    """
    by_video = defaultdict(list)
    for ann in raw.get('annotations') or []:
        by_video[ann['video_id']].append(ann)
    listed = {video['id'] for video in raw['videos']}
    orphans = sorted(set(by_video) - listed)
    if orphans:
        raise DatasetContentError(
            f"'{source}': {len(orphans)} annotated video(s) are missing from "
            f"its 'videos' list, e.g. video_id {orphans[:5]}.")

    out = dict(
        categories=raw['categories'], videos=[], images=[], annotations=[])
    instance_ids = {}
    for video in raw['videos']:
        height, width = video['height'], video['width']
        out['videos'].append(
            dict(
                id=video['id'],
                name=video['file_names'][0].split('/')[0],
                width=width,
                height=height))
        for frame_id, file_name in enumerate(video['file_names']):
            image_id = len(out['images']) + 1
            out['images'].append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    height=height,
                    width=width,
                    frame_id=frame_id,
                    video_id=video['id']))
            for ann in by_video[video['id']]:
                segm = ann['segmentations'][frame_id]
                if segm is None:
                    continue
                bboxes, areas = ann.get('bboxes'), ann.get('areas')
                if bboxes is None or areas is None or \
                        bboxes[frame_id] is None:
                    bbox, area = _box_and_area(segm, height, width)
                else:
                    bbox, area = bboxes[frame_id], areas[frame_id]
                out['annotations'].append(
                    dict(
                        id=len(out['annotations']) + 1,
                        video_id=video['id'],
                        image_id=image_id,
                        category_id=ann['category_id'],
                        instance_id=instance_ids.setdefault(
                            ann['id'],
                            len(instance_ids) + 1),
                        bbox=bbox,
                        segmentation=segm,
                        area=area,
                        iscrowd=ann.get('iscrowd', 0)))
    return out
