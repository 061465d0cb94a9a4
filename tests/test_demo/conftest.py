import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, build_model

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
