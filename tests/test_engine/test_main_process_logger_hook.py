"""The test metrics are logged and written by the main process only, and
written whole."""
import json

import numpy as np
import pytest
from mmengine.hooks import LoggerHook

from rap_sam.engine import MainProcessLoggerHook
from rap_sam.engine import main_process_logger_hook as module


@pytest.mark.parametrize('main, calls', [(True, 1), (False, 0)])
def test_only_the_main_process_writes_test_metrics(monkeypatch, main, calls):
    written = []
    monkeypatch.setattr(
        LoggerHook,
        'after_test_epoch',
        lambda self, runner, metrics=None: written.append((runner, metrics)))
    monkeypatch.setattr(module, 'is_main_process', lambda: main)
    MainProcessLoggerHook().after_test_epoch('runner', {'PQ': 1.0})
    assert written == [('runner', {'PQ': 1.0})] * calls


def test_integer_metrics_are_written(tmp_path):
    """As the message hub hands them back (numpy scalars): mmengine's own
    hook wrote the integers as null."""
    from types import SimpleNamespace
    tags = {
        'coco_sam/mIoU': np.float64(0.25),
        'coco_sam/num_clicks': np.int64(8),
        'coco_sam/num_skipped': np.int64(0),
        'time': 1.5,
    }
    runner = SimpleNamespace(
        log_processor=SimpleNamespace(
            get_log_after_epoch=lambda *args, **kwargs: (dict(tags), '')),
        test_dataloader=[0],
        logger=SimpleNamespace(info=lambda text: None),
        log_dir=str(tmp_path))
    hook = MainProcessLoggerHook()
    hook.json_log_path = 'metrics.json'
    hook.after_test_epoch(runner)
    assert json.loads((tmp_path / 'metrics.json').read_text()) == {
        'coco_sam/mIoU': 0.25,
        'coco_sam/num_clicks': 8,
        'coco_sam/num_skipped': 0,
        'time': 1.5
    }
