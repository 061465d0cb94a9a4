"""SafeDumpDetResults (tools/test.py --out): mmdet's dump, written whole
and never over a file another run wrote after the check."""
import os
import pickle

import numpy as np
import pytest
import torch

from rap_sam.evaluation.metrics import SafeDumpDetResults
from rap_sam.utils.output_files import OutputError, check_outputs


def _sample():
    masks = torch.zeros(2, 4, 6, dtype=torch.bool)
    masks[0, :2, :3] = True
    return dict(
        img_id=7,
        gt_instances=dict(labels=torch.tensor([1])),
        pred_instances=dict(
            labels=torch.tensor([3, 5]),
            scores=torch.tensor([0.9, 0.4]),
            masks=masks))


def test_dumps_what_mmdet_dumps(tmp_path):
    out = tmp_path / 'results.pkl'
    metric = SafeDumpDetResults(out_file_path=str(out))
    metric.process({}, [_sample()])
    assert metric.compute_metrics(metric.results) == {}
    [got] = pickle.loads(out.read_bytes())
    assert got['img_id'] == 7 and 'gt_instances' not in got
    assert got['pred_instances']['labels'].tolist() == [3, 5]
    # Masks as RLE, as mmdet's DumpDetResults writes them.
    from pycocotools import mask as mask_utils
    decoded = mask_utils.decode(got['pred_instances']['masks'][0])
    assert decoded.shape == (4, 6) and decoded.sum() == 6
    assert np.array_equal(decoded[:2, :3], np.ones((2, 3)))
    assert os.listdir(tmp_path) == ['results.pkl']


def test_a_file_written_meanwhile_stays(tmp_path):
    out = tmp_path / 'results.pickle'
    check_outputs([str(out)], [], overwrite=False)
    out.write_bytes(b'the other run')
    metric = SafeDumpDetResults(out_file_path=str(out))
    metric.process({}, [_sample()])
    with pytest.raises(OutputError, match='appeared while this run was'):
        metric.compute_metrics(metric.results)
    assert out.read_bytes() == b'the other run'
    assert os.listdir(tmp_path) == ['results.pickle']
