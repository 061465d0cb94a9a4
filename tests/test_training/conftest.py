"""Tiny data in the official formats and the toy class embeddings."""
import pytest
import torch
from training_helpers import load_tool

from rap_sam.testing import make_coco_panoptic, make_youtube_vis


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """COCO panoptic (train2017 + val2017, 4 images each) and YouTube-VIS
    (train, 2 videos of 4 frames) under one root, with the toy recipe's
    class embeddings in ROOT/embd."""
    root = tmp_path_factory.mktemp('toy')
    make_coco_panoptic(
        str(root / 'data' / 'coco'),
        num_images=4,
        splits=('train2017', 'val2017'))
    make_youtube_vis(
        str(root / 'data' / 'youtube_vis_2019'),
        num_videos=2,
        num_frames=4,
        splits=('train', ))
    load_tool('toy_train_eval').write_toy_class_embeddings(str(root / 'embd'))
    return root


@pytest.fixture(autouse=True, scope='package')
def one_thread():
    """One torch thread: on a shared 2-core machine a second OpenMP thread
    mostly waits for a busy core (training steps run several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
