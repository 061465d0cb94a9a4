"""The test metrics are logged and written by the main process only."""
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
