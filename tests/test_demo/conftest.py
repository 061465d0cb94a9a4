import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, assert_ran, build_model, run_script

# The demo scripts import their siblings (demo_cli, video_demo) by name.
sys.path.insert(0, osp.join(REPO, 'demo'))


@pytest.fixture(scope='session')
def weights(tmp_path_factory):
    """Seeded random weights as a checkpoint file, for every config."""
    path = tmp_path_factory.mktemp('ckpt') / 'seeded.pth'
    torch.save({'state_dict': build_model().state_dict()}, path)
    return str(path)


@pytest.fixture(scope='session')
def small_photo(tmp_path_factory):
    """demo.jpg at 150 x 100, as a file."""
    img = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    path = tmp_path_factory.mktemp('img') / 'coffee.png'
    cv2.imwrite(
        str(path), cv2.resize(img, (150, 100), interpolation=cv2.INTER_AREA))
    return str(path)


@pytest.fixture(scope='session')
def small_video(tmp_path_factory, small_photo):
    """A 4-frame mp4 panning over the photo, 96 x 64."""
    img = cv2.imread(small_photo)
    path = str(tmp_path_factory.mktemp('video') / 'pan.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 64))
    for t in range(4):
        writer.write(np.ascontiguousarray(img[18:82, 8 * t:8 * t + 96]))
    writer.release()
    return path


@pytest.fixture(scope='session')
def fp32_export(weights, tmp_path_factory):
    """An fp32 export of the seeded weights by tools/deploy/export.py, at
    96 x 64: small, so the export and each run take seconds; small_photo
    (150 x 100) fits it exactly, so no padding differs between it and the
    free-shape export a demo caches for --backend onnxruntime."""
    out = tmp_path_factory.mktemp('export') / 'fp32'
    assert_ran(
        run_script('tools/deploy/export.py',
                   'configs/rap_sam/eval_rap_sam_coco.py', '--checkpoint',
                   weights, '--out', out, '--scale', 96, 64))
    return out
