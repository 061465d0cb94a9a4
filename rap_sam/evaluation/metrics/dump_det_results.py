"""mmdet's ``DumpDetResults`` (``tools/test.py --out``), writing its pickle
file the way every result file of this project is written."""
import os.path as osp

from mmdet.evaluation import DumpDetResults
from mmdet.registry import METRICS
from mmengine.fileio import dump
from mmengine.logging import print_log

from rap_sam.utils.output_files import atomic_output


@METRICS.register_module()
class SafeDumpDetResults(DumpDetResults):
    """:class:`mmdet.evaluation.DumpDetResults` whose file appears whole or
    not at all (written beside it, synced, renamed: a run killed while
    dumping leaves the earlier file or none, never half of one), and which,
    when ``tools/test.py`` cleared ``--out`` without ``--overwrite``
    (:func:`rap_sam.utils.output_files.check_outputs`), does not replace a
    file another run wrote there meanwhile (an ``OutputError`` says so).
    """

    def compute_metrics(self, results: list) -> dict:
        ext = osp.splitext(self.out_file_path)[1].lstrip('.')
        with atomic_output(self.out_file_path) as tmp:
            dump(results, tmp, file_format=ext)
        print_log(
            f'Results have been saved to {self.out_file_path}.',
            logger='current')
        return {}
