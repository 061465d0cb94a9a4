from typing import Dict, Optional

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's ``LoggerHook``, with the test metrics written once and
    whole.

    mmengine's hook writes ``{timestamp}.json`` after a test from every
    process into the same file (the other logs go through the visualizer,
    which writes from the main process only). Each process's line holds its
    own timings, so lines of different lengths overwrite each other and the
    file of a multi-process or multi-node evaluation can end up holding two
    half records. Here only the main process logs and writes them; the
    metrics are the same on every process.

    mmengine's message hub hands integer metrics back as numpy integers
    (``HistoryBuffer``), which its json writer drops as unknown (a count
    such as ``coco_sam/num_clicks`` was ``null`` in the file while the log
    line said 8); numpy scalars are written as the numbers they are.
    """

    @staticmethod
    def _process_tags(tags: dict):
        return LoggerHook._process_tags({
            key:
            value.item() if isinstance(value, np.generic) else value
            for key, value in tags.items()
        })

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
