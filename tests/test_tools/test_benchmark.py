"""tools/analysis/benchmark.py: tiny smoke runs (small inputs, one round);
the report's fields, never its timings."""
import importlib.util
import json
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = osp.join(ROOT, 'configs', 'rap_sam', 'eval_rap_sam_coco.py')


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools', 'analysis', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return load_tool()


def test_image_with_mask2former(tool, tmp_path, capsys):
    out = tmp_path / 'report.json'
    report = tool.main([
        COCO, '--shape', '64', '96', '--warmup', '0', '--repeats', '1',
        '--threads', '1', '--compare', 'mask2former', '--accuracy', '--out',
        str(out)
    ])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text())['variants'].keys() == \
        report['variants'].keys() == {'reference', 'fast', 'mask2former'}
    assert report['task'] == 'image' and report['shape'] == [64, 96]
    assert report['machine']['threads'] == 1
    assert len(report['load_average_before']) == 3
    for name, entry in report['variants'].items():
        med = entry['median_s']
        assert {'backbone', 'head', 'post', 'e2e'} <= med.keys()
        assert all(v >= 0 for k, v in med.items() if k != 'post')
        assert entry['fps'] > 0
        assert entry['params_m'] > 30
        assert entry['gflops']['total'] > 0
        assert entry['peak_memory_mb'] >= 0
    assert 'neck' in report['variants']['fast']['median_s']
    # RAP-SAM R50 holds 47.3M parameters (released checkpoint: 47,308,949
    # numbers, of which the class embeddings are buffers, not parameters).
    assert abs(report['variants']['reference']['params_m'] - 47.25) < 0.1
    assert {
        'fast_vs_reference_e2e', 'fast_vs_mask2former_e2e',
        'fast_vs_mask2former_forward'
    } <= report['speedup'].keys()
    acc = report['accuracy_vs_reference']['fast']
    assert acc['mask_logits_rel_err'] < 1e-4
    assert acc['panoptic_pixel_agreement'] > 0.999
    for word in ('backbone', 'e2e', 'FPS', 'GFLOPs', 'speedup',
                 'fast_vs_mask2former_e2e', 'load average'):
        assert word in printed


def test_prompt_task(tool):
    report = tool.main([
        COCO.replace('coco', 'prompt'), '--task', 'prompt', '--shape', '64',
        '96', '--warmup', '0', '--repeats', '1', '--num-prompts', '3',
        '--variants', 'fast', '--no-flops', '--no-memory'
    ])
    med = report['variants']['fast']['median_s']
    assert {'features', 'decode', 'decode_cached', 'e2e'} <= med.keys()
    assert report['variants']['fast']['outputs']['instances'] == 3


def test_video_task(tool):
    report = tool.main([
        COCO.replace('coco', 'yt19'), '--task', 'video', '--shape', '64', '96',
        '--num-frames', '2', '--warmup', '0', '--repeats', '1', '--variants',
        'reference', '--no-memory'
    ])
    entry = report['variants']['reference']
    assert entry['fps'] > 0 and entry['gflops']['total'] > 0


def test_compare_needs_image_task(tool):
    with pytest.raises(SystemExit):
        tool.main([COCO, '--task', 'prompt', '--compare', 'mask2former'])
