"""Annotations of images their annotation file does not list."""
from typing import Iterable, Optional

from .data_checks import DatasetContentError


def check_no_orphan_annotations(ann_file: str,
                                annotations: Optional[Iterable[dict]],
                                image_ids: Iterable[int]) -> None:
    """Raise :class:`DatasetContentError` when one of ``annotations`` (the
    ``annotations`` list of ``ann_file``, ``None`` for none) refers to an
    image outside ``image_ids``: the json is corrupt or mixes two splits,
    and pycocotools' index would drop those annotations without a word.
    """
    orphans = sorted({a['image_id']
                      for a in annotations or []} - set(image_ids))
    if orphans:
        raise DatasetContentError(
            f"'{ann_file}': {len(orphans)} annotation(s) refer to "
            f"images missing from its 'images' list, e.g. image_id "
            f'{orphans[:5]}.')
