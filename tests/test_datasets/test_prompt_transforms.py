from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from mmcv.transforms import Compose, LoadImageFromFile
from mmdet.datasets.transforms import Resize
from mmdet.registry import DATASETS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from scipy.ndimage import distance_transform_edt

from rap_sam.datasets.transforms import (GenerateSegmentPrompts,
                                         LoadPanopticSegments,
                                         PackPromptInputs, farthest_point)
from rap_sam.testing import make_coco_panoptic, shape_mask

CONFIG = Path(__file__).parents[2] / 'configs/_base_/datasets/' \
    'coco_sam_prompt.py'
PERSON, SKY = 0, 119  # contiguous labels of COCO ids 1 and 187


def rect(h, w, y1, y2, x1, x2):
    mask = np.zeros((h, w), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def brute_force_point(mask):
    """The definition, on the whole image padded by one background pixel."""
    dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(np.argmax(dist), dist.shape)
    return int(col), int(row)


def test_farthest_point_hand_computed():
    # rows 10..19, cols 20..39: distance min(r-9, 20-r, c-19, 40-c) peaks at
    # 5 on rows 14 and 15 for cols 24..35; row-major first is (x=24, y=14)
    assert farthest_point(rect(50, 60, 10, 20, 20, 40)) == (24, 14)
    # an 11x11 square has a single centre
    assert farthest_point(rect(40, 40, 10, 21, 10, 21)) == (15, 15)
    # the image edge counts as border: rows 0..4, cols 0..9 peak at 3 on
    # row 2 for cols 2..7
    assert farthest_point(rect(20, 20, 0, 5, 0, 10)) == (2, 2)
    assert farthest_point(rect(5, 5, 4, 5, 4, 5)) == (4, 4)
    with pytest.raises(ValueError, match='non-empty'):
        farthest_point(np.zeros((4, 4), bool))


def test_farthest_point_matches_whole_image_transform():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(20, 60, size=2)
        x1, y1 = rng.integers(0, w - 5), rng.integers(0, h - 5)
        box = (x1, y1, rng.integers(x1 + 2,
                                    w + 1), rng.integers(y1 + 2, h + 1))
        mask = shape_mask(h, w, box, ellipse=bool(rng.random() < .5))
        mask[rng.random((h, w)) < .05] = False  # holes make ties and pits
        if mask.any():
            x, y = farthest_point(mask)
            assert mask[y, x]
            assert (x, y) == brute_force_point(mask)


def write_panoptic(tmp_path, ids, name='img'):
    """Image + RGB-id PNG for the id map ``ids``; returns results dict."""
    img, png = tmp_path / f'{name}.jpg', tmp_path / f'{name}.png'
    cv2.imwrite(str(img), (ids % 200).astype(np.uint8)[..., None].repeat(3, 2))
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
    cv2.imwrite(str(png), rgb[..., ::-1].astype(np.uint8))
    return dict(img_path=str(img), seg_map_path=str(png), img_id=1)


def pipeline(thing_prompt='click'):
    return Compose([
        dict(type=LoadImageFromFile),
        dict(type=LoadPanopticSegments),
        dict(type=Resize, scale=(1333, 800), keep_ratio=True),
        dict(type=GenerateSegmentPrompts, thing_prompt=thing_prompt),
        dict(type=PackPromptInputs),
    ])


@pytest.fixture
def person_on_sky(tmp_path):
    # 80x100 image -> x10 to 800x1000; a person rectangle rows 10..19,
    # cols 20..39 on sky; the resized rectangle is rows 100..199, cols
    # 200..399
    ids = np.full((80, 100), 7000, dtype=np.int64)
    person = rect(80, 100, 10, 20, 20, 40)
    ids[person] = 4242
    results = write_panoptic(tmp_path, ids)
    results['segments_info'] = [
        dict(id=4242, category=PERSON, is_thing=True),
        dict(id=7000, category=SKY, is_thing=False)
    ]
    return results, person


def test_click_prompts_contract(person_on_sky):
    results, person = person_on_sky
    packed = pipeline()(results)
    sample = packed['data_samples']
    assert sample.img_shape == (800, 1000) and sample.ori_shape == (80, 100)
    prompts = sample.gt_instances_collected
    assert len(prompts) == 2
    assert prompts.point_coords.dtype == torch.float32
    # distance peaks at 50 on row 149 from col 249 on: click (249, 149)
    assert prompts.point_coords[0].tolist() == [246, 146, 252, 152]
    assert prompts.pb_labels.dtype == torch.long
    assert prompts.pb_labels.tolist() == [1, 1]
    assert prompts.is_box.tolist() == [False, False]
    assert prompts.is_thing.tolist() == [True, False]
    assert prompts.labels.tolist() == [PERSON, SKY]
    assert prompts.segment_ids.tolist() == [4242, 7000]
    assert sample.num_skipped_prompts == 0
    # the sky click is the distance maximum of the resized sky mask
    sky = ~np.kron(person, np.ones((10, 10), bool))
    x, y = brute_force_point(sky)
    assert prompts.point_coords[1].tolist() == [x - 3, y - 3, x + 3, y + 3]
    # original-resolution masks, in prompt order
    ori = mask_utils.decode(prompts.ori_masks).transpose(2, 0, 1)
    assert ori.shape == (2, 80, 100)
    assert np.array_equal(ori[0], person) and np.array_equal(ori[1], ~person)


def test_box_prompts_for_things(person_on_sky):
    results, _ = person_on_sky
    prompts = pipeline('box')(results)['data_samples'].gt_instances_collected
    assert prompts.point_coords[0].tolist() == [200, 100, 400, 200]
    assert prompts.is_box.tolist() == [True, False]
    click = pipeline()(dict(person_on_sky[0]))['data_samples']
    assert torch.equal(prompts.point_coords[1],
                       click.gt_instances_collected.point_coords[1])


def test_both_prompts_for_things(person_on_sky):
    results, person = person_on_sky
    prompts = pipeline('both')(results)['data_samples'].gt_instances_collected
    # the person's click, then its box, then the sky's click
    assert prompts.point_coords[0].tolist() == [246, 146, 252, 152]
    assert prompts.point_coords[1].tolist() == [200, 100, 400, 200]
    assert prompts.is_box.tolist() == [False, True, False]
    assert prompts.segment_ids.tolist() == [4242, 4242, 7000]
    ori = mask_utils.decode(prompts.ori_masks).transpose(2, 0, 1)
    assert np.array_equal(ori[0], person) and np.array_equal(ori[1], person)


def test_segment_vanishing_in_resize_is_skipped(tmp_path):
    # 20x4000 is shrunk by 1/3 with nearest sampling (source columns 0, 3,
    # 6, ...), so a 1-px column at x=1 disappears
    ids = np.full((20, 4000), 7000, dtype=np.int64)
    ids[:, 1] = 5
    ids[5:15, 2000:2030] = 6
    results = write_panoptic(tmp_path, ids)
    results['segments_info'] = [
        dict(id=5, category=PERSON, is_thing=True),
        dict(id=6, category=PERSON, is_thing=True),
        dict(id=7000, category=SKY, is_thing=False)
    ]
    sample = pipeline()(results)['data_samples']
    assert sample.img_shape == (7, 1333)
    prompts = sample.gt_instances_collected
    assert sample.num_skipped_prompts == 1
    assert prompts.segment_ids.tolist() == [6, 7000]
    assert mask_utils.area(prompts.ori_masks).tolist() == [300, 80000 - 320]


def test_generate_prompts_on_given_masks():
    masks = np.stack([
        rect(30, 40, 0, 0, 0, 0),  # empty
        rect(30, 40, 10, 21, 10, 21),
    ]).astype(np.uint8)
    results = dict(
        img_shape=(30, 40),
        gt_masks=BitmapMasks(masks, 30, 40),
        gt_bboxes=HorizontalBoxes(
            torch.tensor([[0, 0, 0, 0], [10, 10, 21, 21.]])),
        gt_bboxes_labels=np.array([3, 90]),
        gt_is_thing=np.array([True, False]),
        gt_segment_ids=np.array([1, 2]),
        gt_masks_rle=['a', 'b'])
    out = GenerateSegmentPrompts(thing_prompt='box')(results)
    assert out['prompt_boxes'].tolist() == [[12, 12, 18, 18]]
    assert out['prompt_is_box'].tolist() == [False]  # stuff: always a click
    assert out['prompt_masks_rle'] == ['b']
    assert out['num_skipped_prompts'] == 1
    with pytest.raises(
            ValueError, match="thing_prompt must be 'click', 'box' or"):
        GenerateSegmentPrompts(thing_prompt='point')


def test_png_size_mismatch_is_reported(tmp_path, person_on_sky):
    results, _ = person_on_sky
    other = write_panoptic(tmp_path, np.ones((10, 10), np.int64), 'small')
    results['seg_map_path'] = other['seg_map_path']
    with pytest.raises(
            ValueError,
            match=r"small.png' is 10x10 but its image "
            r"'.*img.jpg' is 100x80"):
        pipeline()(results)


def test_config_on_toy_data(tmp_path):
    written = make_coco_panoptic(str(tmp_path), num_images=2, seed=5)
    cfg = Config.fromfile(str(CONFIG))
    assert cfg.test_dataloader.batch_size == 1
    assert cfg.test_dataloader.dataset.data_root == 'data/coco/'
    cfg.test_dataloader.dataset.data_root = str(tmp_path)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    for k, image in enumerate(written['val2017']['images']):
        sample = dataset[k]['data_samples']
        prompts = sample.gt_instances_collected
        segments = image['segments']
        assert len(prompts) == len(segments)  # things and stuff
        assert prompts.is_thing.tolist() == [
            bool(s['isthing']) for s in segments
        ]
        h, w = sample.img_shape
        sy, sx = h / image['height'], w / image['width']
        for box, seg in zip(prompts.point_coords, segments):
            x, y = int(box[0]) + 3, int(box[1]) + 3
            assert box.tolist() == [x - 3, y - 3, x + 3, y + 3]
            # the click lies in the segment (checked on the resized mask)
            resized = cv2.resize(
                seg['mask'].astype(np.uint8), (w, h),
                interpolation=cv2.INTER_NEAREST)
            assert resized[y, x]
            assert seg['mask'][int(y / sy), int(x / sx)]
