"""rap_sam.testing's batches: what the pipeline packs for images and clips
that need no resize."""
import numpy as np
import torch
from mmdet.structures import TrackDataSample

from rap_sam.deploy.benchmark import image_data, video_data
from rap_sam.testing import image_batch, video_batch


def _image(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def test_image_batch_packs_pixels_metainfo_and_prompts():
    images = [_image(6, 8, 0), _image(5, 4, 1)]
    data = image_batch(images, [[[1, 2, 3, 4]], np.zeros((0, 4))])
    for i, (img, x, sample) in enumerate(
            zip(images, data['inputs'], data['data_samples'])):
        # CHW, the BGR bytes unchanged.
        assert torch.equal(x.permute(1, 2, 0), torch.from_numpy(img))
        h, w = img.shape[:2]
        assert sample.img_id == i
        assert sample.img_shape == sample.ori_shape == (h, w)
        assert sample.scale_factor == (1., 1.)
    prompts = data['data_samples'][0].gt_instances_collected
    assert prompts.point_coords.tolist() == [[1., 2., 3., 4.]]
    assert prompts.point_coords.dtype == torch.float32
    assert prompts.pb_labels.tolist() == [1]
    assert len(data['data_samples'][1].gt_instances_collected) == 0
    assert 'gt_instances_collected' not in image_batch(
        images[:1])['data_samples'][0]


def test_video_batch_is_one_clip_of_frames():
    frames = np.stack([_image(4, 6, t) for t in range(3)])
    data = video_batch(frames)
    (x, ), (clip, ) = data['inputs'], data['data_samples']
    assert x.shape == (3, 3, 4, 6)
    assert torch.equal(x.permute(0, 2, 3, 1), torch.from_numpy(frames))
    assert isinstance(clip, TrackDataSample) and len(clip) == 3
    for t in range(3):
        meta = clip[t].metainfo
        assert (meta['img_id'], meta['frame_id'], meta['video_length']) == \
            (t, t, 3)
        assert meta['img_shape'] == meta['ori_shape'] == (4, 6)


def test_benchmark_inputs_are_the_same_batches():
    img = _image(4, 16, 0)
    boxes = torch.tensor([[1., 1., 7., 7.]])
    data = image_data(img, boxes)
    want = image_batch([img], [boxes])
    assert torch.equal(data['inputs'][0], want['inputs'][0])
    assert data['data_samples'][0].metainfo == \
        want['data_samples'][0].metainfo
    clip = video_data(img, 2)
    (x, ) = clip['inputs']
    # Frame t is the image shifted 8 * t pixels to the right.
    assert torch.equal(x[1].permute(1, 2, 0),
                       torch.from_numpy(np.roll(img, 8, axis=1)))
    assert clip['data_samples'][0][1].frame_id == 1
