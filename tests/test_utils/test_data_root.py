"""rap_sam.utils.data_root.tie_seg_prefixes on configs built here: which
evaluator moves, which is kept, and what is refused."""
import pytest
from mmengine.config import Config

from rap_sam.utils.data_root import SegPrefixError, loop_runs, tie_seg_prefixes


def _cfg(root='data/coco/', evaluator=None):
    dataset = dict(
        data_root=root, data_prefix=dict(img='val2017/', seg='pan/'))
    metric = dict(type='CocoPanopticMetric', seg_prefix=root + 'pan/')
    cfg = Config(
        dict(
            test_dataloader=dict(dataset=dataset),
            test_evaluator=evaluator or metric,
            val_dataloader=dict(dataset=dict(dataset)),
            val_evaluator=dict(metric),
            val_cfg=dict(type='ValLoop')))
    return cfg


def _merged(cfg, options):
    cfg.merge_from_dict(options)
    return cfg


def test_each_metric_of_a_list_follows_its_loops_root(tmp_path):
    (tmp_path / 'pan').mkdir()
    root = f'{tmp_path}/'
    cfg = _cfg(evaluator=[
        dict(type='CocoPanopticMetric', seg_prefix='data/coco/pan/'),
        dict(type='DumpDetResults', out_file_path='x.pkl')
    ])
    options = {'test_dataloader.dataset.data_root': root}
    tie_seg_prefixes(_merged(cfg, options), options, check=('test', ))
    assert cfg.test_evaluator[0].seg_prefix == f'{tmp_path}/pan/'
    assert 'seg_prefix' not in cfg.test_evaluator[1]
    assert cfg.val_evaluator.seg_prefix == 'data/coco/pan/'


def test_a_moved_seg_prefix_of_the_data_prefix_moves_it():
    options = {'val_dataloader.dataset.data_prefix.seg': 'other_pngs/'}
    cfg = _merged(_cfg(), options)
    tie_seg_prefixes(cfg, options)
    assert cfg.val_evaluator.seg_prefix == 'data/coco/other_pngs/'
    assert cfg.test_evaluator.seg_prefix == 'data/coco/pan/'


@pytest.mark.parametrize('given, as_list',
                         [('test_evaluator.seg_prefix', False),
                          ('test_evaluator.0.seg_prefix', True)])
def test_a_given_seg_prefix_is_kept(tmp_path, given, as_list):
    """The user's seg_prefix wins over the moved root, and is checked."""
    options = {
        'test_dataloader.dataset.data_root': f'{tmp_path}/',
        given: f'{tmp_path}/mine/'
    }
    metric = dict(type='CocoPanopticMetric', seg_prefix='x/')
    cfg = _merged(_cfg(evaluator=[metric] if as_list else metric), options)
    with pytest.raises(SegPrefixError) as err:
        tie_seg_prefixes(cfg, options, check=('test', ))
    assert str(err.value) == (
        f'test_evaluator.seg_prefix {tmp_path}/mine/ is not a folder (the '
        'panoptic PNGs of the test annotations); pass --cfg-options '
        f'test_evaluator.seg_prefix=DIR/, e.g. {tmp_path}/pan/')


def test_only_the_checked_loops_must_exist(tmp_path):
    options = {
        'test_dataloader.dataset.data_root': f'{tmp_path}/',
        'val_dataloader.dataset.data_root': f'{tmp_path}/',
    }
    cfg = _merged(_cfg(), options)
    tie_seg_prefixes(cfg, options)  # nothing checked: nothing refused
    assert cfg.val_evaluator.seg_prefix == f'{tmp_path}/pan/'
    with pytest.raises(SegPrefixError, match='^val_evaluator.seg_prefix'):
        tie_seg_prefixes(cfg, options, check=('val', ))


def test_missing_roots_and_remote_prefixes_are_not_its_to_refuse(tmp_path):
    options = {'test_dataloader.dataset.data_root': f'{tmp_path}/absent/'}
    cfg = _merged(_cfg(), options)
    tie_seg_prefixes(cfg, options, check=('test', ))  # the dataset says it
    (tmp_path / 'coco').mkdir()
    options = {
        'test_dataloader.dataset.data_root': f'{tmp_path}/coco/',
        'test_evaluator.seg_prefix': 's3://bucket/pan/'
    }
    cfg = _merged(_cfg(), options)
    tie_seg_prefixes(cfg, options, check=('test', ))
    assert cfg.test_evaluator.seg_prefix == 's3://bucket/pan/'


def test_loop_runs_with_all_three_parts():
    cfg = _cfg()
    assert loop_runs(cfg, 'val')
    assert not loop_runs(cfg, 'test')  # no test_cfg
    cfg.val_dataloader = None
    assert not loop_runs(cfg, 'val')
