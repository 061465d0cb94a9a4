"""Helpers of the training tests: tools loaded as modules and the toy
recipe's config shrunk for quick runs."""
import os.path as osp

import helpers

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name: str):
    """``tools/NAME.py`` as a module."""
    return helpers.load_tool(f'tools/{name}.py')


def _resize_pipelines(node, size):
    """Set every resize scale and crop size in a config to ``size``."""
    if isinstance(node, dict):
        for key in ('scale', 'crop_size'):
            if key in node:
                node[key] = (size, size)
        for value in node.values():
            _resize_pipelines(value, size)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _resize_pipelines(value, size)


def toy_train_cfg(root, work_dir, size=96, extra=()):
    """The toy recipe through tools/train.py's config handling, on the
    fixture's data, at ``size`` px, one epoch, logging every iteration."""
    train = load_tool('train')
    args = train.parse_args([
        osp.join(REPO, 'configs/rap_sam/toy_rap_sam_train.py'), '--work-dir',
        str(work_dir), *extra
    ])
    cfg = train.build_cfg(args)
    datasets = cfg.train_dataloader.dataset.datasets
    datasets[0].data_root = datasets[2].dataset.data_root = (
        f'{root}/data/coco/')
    datasets[1].dataset.data_root = f'{root}/data/youtube_vis_2019/'
    _resize_pipelines(cfg.train_dataloader, size)
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.model.panoptic_head.ov_classifier_dir = f'{root}/embd'
    cfg.model.train_cfg.num_points = 256
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.log_processor.window_size = 1
    cfg.randomness = dict(seed=0)
    return cfg
