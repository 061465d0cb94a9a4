import copy
from typing import List

import mmengine
from mmdet.datasets import YouTubeVISDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path

from .class_names import YOUTUBE_VIS_2019_CLASSES
from .data_checks import (DatasetContentError, check_annotation_file,
                          check_files_exist, entries_complete,
                          sample_load_error)
from .orphan_annotations import check_no_orphan_annotations
from .youtube_vis_format import is_official_format, official_to_coco_video

YTVIS_LAYOUT = """\
  <data_root>/                      (data/youtube_vis_2019/)
    train/JPEGImages/<video>/<frame>.jpg
    valid/JPEGImages/<video>/<frame>.jpg
    train.json, valid.json           (official YouTube-VIS 2019 files)
    or annotations/youtube_vis_2019_{train,valid}.json (mmdet-converted)"""


@DATASETS.register_module()
class YouTubeVISOVDataset(YouTubeVISDataset):
    """YouTube-VIS with the class names of the open-vocabulary classifier.

    Differences from mmdet's ``YouTubeVISDataset``:

    - reads the official json (``videos`` with ``file_names``) directly as
      well as mmdet's converted COCO-video json;
    - classes are matched to the file's categories by name and the label of
      class ``i`` is ``i`` whatever the file's category order;
    - ``dataset_name`` (``'YouTubeVISDataset_2019'``) names the
      class-embedding file;
    - a missing root, annotation file or frame, annotations of unlisted
      videos / images and unreadable frames raise errors naming the file.

    In test mode one sample is a whole video (mmdet's video-level test mode
    with ``DefaultSampler``); ``TrackImgSampler`` would give single frames.
    With :class:`PackLazyTrackInputs` (the yt19 config) the sample holds
    the frames' paths and the model reads them one clip at a time
    (:class:`LazyVideo`, which names an unreadable frame as this class
    does).
    """
    # set again per instance by set_dataset_classes; here for class access
    METAINFO = dict(classes=YOUTUBE_VIS_2019_CLASSES)

    def __init__(self, dataset_version: str = '2019', *args, **kwargs):
        self.dataset_name = f'YouTubeVISDataset_{dataset_version}'
        super().__init__(dataset_version, *args, **kwargs)

    @classmethod
    def set_dataset_classes(cls, dataset_version: str) -> None:
        if dataset_version == '2019':
            cls.METAINFO = dict(classes=YOUTUBE_VIS_2019_CLASSES)
        else:
            super().set_dataset_classes(dataset_version)

    def load_data_list(self) -> List[dict]:
        check_annotation_file(self.ann_file, self.data_root, YTVIS_LAYOUT)
        with entries_complete(self.ann_file, 'YouTube-VIS'):
            return self._load_data_list()

    def _load_data_list(self) -> List[dict]:
        with get_local_path(
                self.ann_file, backend_args=self.backend_args) as local_path:
            raw = mmengine.load(local_path, file_format='json')
        if is_official_format(raw):
            raw = official_to_coco_video(raw, self.ann_file)
        raw['annotations'] = raw.get('annotations') or []  # null in valid
        coco = COCO()
        coco.dataset = raw
        coco.createIndex()
        check_no_orphan_annotations(self.ann_file, raw['annotations'],
                                    coco.imgs)
        self.cat_ids = self._category_ids(raw)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(coco.catToImgs)
        self.img_ids_with_ann = set()

        videos = {}
        for img_id in coco.getImgIds():
            raw_img_info = dict(coco.imgs[img_id], img_id=img_id)
            # mmdet's rule: an image without a video is a 1-frame video.
            video_id = raw_img_info.get('video_id', 100000 + img_id)
            video = videos.setdefault(
                video_id, dict(video_id=video_id, images=[], video_length=0))
            anns = coco.loadAnns(
                coco.getAnnIds(imgIds=[img_id], catIds=self.cat_ids))
            info = self.parse_data_info(
                dict(raw_img_info=raw_img_info, raw_ann_info=anns))
            if info['instances']:
                self.img_ids_with_ann.add(img_id)
            video['images'].append(info)
            video['video_length'] += 1
        for video in videos.values():
            video['images'].sort(key=lambda im: im.get('frame_id', 0))
        data_list = list(videos.values())
        if self.backend_args is None:
            check_files_exist(
                [im['img_path'] for v in data_list for im in v['images']],
                'frames', self.ann_file, YTVIS_LAYOUT)
        return data_list

    def _category_ids(self, raw: dict) -> List[int]:
        name_to_id = {c['name']: c['id'] for c in raw.get('categories', [])}
        classes = self.metainfo['classes']
        missing = [name for name in classes if name not in name_to_id]
        if missing:
            raise DatasetContentError(
                f"'{self.ann_file}' lacks {len(missing)} of the "
                f'{len(classes)} {self.dataset_name} categories, e.g. '
                f'{missing[:5]}; is it a YouTube-VIS file of that version?')
        return [name_to_id[name] for name in classes]

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except Exception as err:
            video_idx = idx[0] if isinstance(idx, tuple) else idx
            images = self.get_data_info(video_idx)['images']
            raise sample_load_error(
                type(self).__name__, idx, [im['img_path'] for im in images],
                err) from err
