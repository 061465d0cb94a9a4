from collections import Counter
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from rap_sam.datasets.skipped_samples import is_bad_file_reason


@HOOKS.register_module()
class SkippedSamplesHook(Hook):
    """Log the training samples that bad data cost, per source.

    :class:`~rap_sam.datasets.ConcatOVDataset` replaces a rejected sample
    (every segment cropped away, a video too short for a clip, an image
    with nothing large enough to prompt) and records why in the sample's
    ``skipped_samples``; prompt samples count their segments too small to
    prompt in ``num_tiny_segments``. Every ``interval`` iterations (and at
    the end of each epoch) this hook logs what was skipped since the last
    report, with totals. Counts are those of this process's data (rank 0
    under DDP, which sees its share).

    Samples skipped for a missing or damaged file are counted apart, and
    each such file is named in a warning the first time it is skipped (up
    to ``max_named_files`` of them; later ones are only counted).
    """
    priority = 'LOW'

    def __init__(self, interval: int = 50, max_named_files: int = 100) -> None:
        self.interval = interval
        self.max_named_files = max_named_files
        self.recent, self.total = Counter(), Counter()
        self.tiny = Counter()
        self.bad_files = Counter()
        self.named: set = set()
        self.example: Optional[str] = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        for sample in (data_batch or {}).get('data_samples', []):
            meta = sample.metainfo
            source = meta.get('data_tag', 'train')
            for reason in meta.get('skipped_samples', ()):
                self.recent[source] += 1
                self.example = reason
                if is_bad_file_reason(reason):
                    self._bad_file(runner, source, reason)
            if meta.get('num_tiny_segments'):
                self.tiny[source] += meta['num_tiny_segments']
        if self.every_n_train_iters(runner, self.interval):
            self._report(runner)

    def _bad_file(self, runner, source: str, reason: str) -> None:
        self.bad_files[source] += 1
        if reason in self.named:
            return
        if len(self.named) < self.max_named_files:
            self.named.add(reason)
            runner.logger.warning(f'Skipped a {source} sample: {reason}')
        elif len(self.named) == self.max_named_files:
            self.named.add(reason)
            runner.logger.warning(
                f'More than {self.max_named_files} bad files: the next ones '
                'are counted, not named.')

    def after_train_epoch(self, runner) -> None:
        self._report(runner, force=True)

    def _report(self, runner, force: bool = False) -> None:
        if not self.recent and not force:
            return
        self.total.update(self.recent)
        if self.recent or self.total or self.tiny:
            runner.logger.info(
                f'Skipped samples since the last report: '
                f'{dict(self.recent) or 0} (total {dict(self.total) or 0}'
                f'{", last: " + self.example if self.example else ""}); '
                f'for missing or damaged files, total: '
                f'{dict(self.bad_files) or 0}; '
                f'segments too small to prompt, total: '
                f'{dict(self.tiny) or 0}')
        self.recent.clear()
