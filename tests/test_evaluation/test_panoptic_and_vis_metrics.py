"""mmdet's panoptic and video metrics, as the configs set them up, on toy
data with the ground truth fed back as the prediction."""
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoPanopticMetric, YouTubeVISMetric
from mmdet.registry import DATASETS, METRICS
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData

from rap_sam.testing import make_coco_panoptic, make_youtube_vis

CONFIGS = Path(__file__).parents[2] / 'configs/_base_/datasets'
INSTANCE_OFFSET = 1000  # mmdet's panoptic encoding: label + id * offset


def panoptic_setup(root):
    written = make_coco_panoptic(str(root), num_images=3, seed=4)
    cfg = Config.fromfile(str(CONFIGS / 'coco_panoptic_ov.py'))
    cfg.test_dataloader.dataset.data_root = str(root)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    cfg.test_evaluator.seg_prefix = written['val2017']['seg_dir']
    metric = METRICS.build(cfg.test_evaluator)
    assert isinstance(metric, CocoPanopticMetric)
    metric.dataset_meta = dataset.metainfo
    return written['val2017']['images'], dataset, metric


def panoptic_prediction(dataset, images, k, void_all=False):
    """Image ``k``'s ground truth as a panoptic prediction (things numbered
    from 1: instance 0 of label 0 would be segment id 0, i.e. void)."""
    data = dataset[k]['data_samples']
    num_classes = len(dataset.metainfo['classes'])
    pan = np.full(data.ori_shape, num_classes, dtype=np.int64)  # void
    if not void_all:
        for n, (seg, truth) in enumerate(
                zip(data.segments_info, images[k]['segments'])):
            assert seg['id'] == truth['id']
            label = seg['category']
            pan[truth['mask']] = label + (n + 1) * INSTANCE_OFFSET \
                if seg['is_thing'] else label
        png = data.gt_sem_seg.sem_seg[0].numpy()
        assert ((pan == num_classes) == (png == 255)).all()
    data.pred_panoptic_seg = PixelData(sem_seg=torch.from_numpy(pan)[None])
    return data.to_dict()


def test_panoptic_ground_truth_gives_pq_100(tmp_path):
    images, dataset, metric = panoptic_setup(tmp_path)
    for k in range(len(dataset)):
        metric.process({}, [panoptic_prediction(dataset, images, k)])
    results = metric.evaluate(size=len(dataset))
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert results[f'coco_panoptic/{key}'] == pytest.approx(100.0)


def test_panoptic_void_prediction_gives_pq_0(tmp_path):
    images, dataset, metric = panoptic_setup(tmp_path)
    for k in range(len(dataset)):
        metric.process({}, [panoptic_prediction(dataset, images, k, True)])
    results = metric.evaluate(size=len(dataset))
    assert results['coco_panoptic/PQ'] == 0.0


def vis_setup(root, **evaluator):
    written = make_youtube_vis(
        str(root), num_videos=3, num_frames=4, seed=6, splits=('valid', ))
    cfg = Config.fromfile(str(CONFIGS / 'youtube_vis_2019.py'))
    cfg.test_dataloader.dataset.data_root = str(root)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    cfg.test_evaluator.update(evaluator)
    metric = METRICS.build(cfg.test_evaluator)
    assert isinstance(metric, YouTubeVISMetric)
    metric.dataset_meta = dataset.metainfo
    for k, video in enumerate(written['valid']['videos']):
        track_sample = dataset[k]['data_samples']
        for t, frame in enumerate(track_sample):
            tracks = [
                tr for tr in video['tracks'] if tr['masks'][t] is not None
            ]
            masks = np.stack([tr['masks'][t] for tr in tracks])
            frame.pred_track_instances = InstanceData(
                masks=torch.from_numpy(masks),
                bboxes=torch.zeros(len(tracks), 4),
                scores=torch.ones(len(tracks)),
                labels=torch.tensor([tr['category_id'] - 1 for tr in tracks]),
                instances_id=torch.tensor([tr['id'] for tr in tracks]))
        metric.process({}, [track_sample.to_dict()])
    return written, metric.evaluate(size=len(dataset))


def test_vis_ground_truth_gives_ap_1(tmp_path):
    _, results = vis_setup(
        tmp_path, format_only=False, outfile_prefix=str(tmp_path / 'out'))
    assert results['youtube_vis/segm_mAP'] == 1.0
    assert results['youtube_vis/segm_mAP_50'] == 1.0
    assert results['youtube_vis/segm_mAP_75'] == 1.0


def test_vis_format_only_writes_server_json(tmp_path):
    written, results = vis_setup(
        tmp_path, outfile_prefix=str(tmp_path / 'out' / 'results'))
    assert results == {}
    entries = json.loads((tmp_path / 'out' / 'results.json').read_text())
    videos = written['valid']['videos']
    assert len(entries) == sum(len(v['tracks']) for v in videos)
    by_video = {v['id']: v for v in videos}
    for entry in entries:
        assert set(entry) == {
            'video_id', 'score', 'category_id', 'segmentations'
        }
        video = by_video[entry['video_id']]
        assert entry['category_id'] in {
            tr['category_id']
            for tr in video['tracks']
        }
        assert len(entry['segmentations']) == 4
    zip_path = tmp_path / 'out' / 'results.submission_file.zip'
    assert zipfile.ZipFile(zip_path).namelist() == ['results.json']
