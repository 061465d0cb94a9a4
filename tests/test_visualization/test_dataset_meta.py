"""config_dataset_meta: the names and colours a config's model is drawn
with, from its test dataset, else (a training config) its training set."""
import copy

from helpers import config_path

from rap_sam.utils.config_file import config_test_scale, read_config
from rap_sam.utils.text_classifier import dataset_vocabulary
from rap_sam.visualization import config_dataset_meta


def test_an_eval_config_gives_its_test_set():
    meta = config_dataset_meta(
        read_config(config_path('rap_sam/eval_rap_sam_coco.py')), 133, 80)
    assert len(meta['classes']) == len(meta['palette']) == 133
    assert meta['thing_classes'][0] == 'person'
    assert meta['stuff_classes'][-1] == 'rug'  # rug-merged, displayed
    assert meta['palette'][0] == (220, 20, 60)  # COCO's person


def test_a_training_config_gives_its_training_set():
    """Its test_dataloader is None (the demo's traceback); the names are
    those its head's classifier was made of (the joint 102 + 53)."""
    cfg = read_config(config_path('rap_sam/rap_sam_r50_12e_adaptor.py'))
    assert cfg.test_dataloader is None
    meta = config_dataset_meta(cfg, 155, 102)
    _, classes = dataset_vocabulary(cfg.train_dataloader.dataset)
    assert len(classes) == len(meta['classes']) == 155
    assert meta['classes'][0] == 'person'
    assert len(meta['thing_classes']) == 102 and len(meta['palette']) == 155
    # The demo's scale: the config's test pipeline's, else mmdet's default.
    assert config_test_scale(cfg) == (1333, 800)


def test_no_dataset_gives_generic_names():
    cfg = copy.deepcopy(
        read_config(config_path('rap_sam/rap_sam_r50_12e_adaptor.py')))
    cfg.train_dataloader = None
    meta = config_dataset_meta(cfg, 3, 2)
    assert meta['classes'] == ['class_0', 'class_1', 'class_2']
    assert meta['thing_classes'] == ['class_0', 'class_1']
    assert len(set(meta['palette'])) == 3
