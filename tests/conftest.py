import os
import os.path as osp

import pytest
import torch
from helpers import random_class_embeddings

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Class-embedding files the configs name, with their class counts.
EMBEDDING_FILES = {
    'convnext_large_d_320_CocoPanopticOVDataset':
    133,
    'convnext_large_d_320_YouTubeVISDataset_2019':
    40,
    'convnext_large_d_320_Concat_CocoPanopticOVDataset_YouTubeVISDataset_2019':
    155,
}


@pytest.fixture(scope='session', autouse=True)
def embedding_dir(tmp_path_factory):
    """Seeded stand-ins for the CLIP class-embedding files, found through
    RAP_SAM_EMBD_DIR as real ones are through ~/.cache/embd."""
    root = tmp_path_factory.mktemp('embd')
    for i, (name, classes) in enumerate(EMBEDDING_FILES.items()):
        torch.save(
            random_class_embeddings(classes, seed=i), root / f'{name}.pth')
    old = os.environ.get('RAP_SAM_EMBD_DIR')
    os.environ['RAP_SAM_EMBD_DIR'] = str(root)
    yield root
    if old is None:
        os.environ.pop('RAP_SAM_EMBD_DIR', None)
    else:
        os.environ['RAP_SAM_EMBD_DIR'] = old
