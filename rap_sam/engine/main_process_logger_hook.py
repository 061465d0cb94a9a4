from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's ``LoggerHook``, with the test metrics written once.

    mmengine's hook writes ``{timestamp}.json`` after a test from every
    process into the same file (the other logs go through the visualizer,
    which writes from the main process only). Each process's line holds its
    own timings, so lines of different lengths overwrite each other and the
    file of a multi-process or multi-node evaluation can end up holding two
    half records. Here only the main process logs and writes them; the
    metrics are the same on every process.
    """

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
