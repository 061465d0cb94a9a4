"""tools/test.py and tools/dist_test.sh end to end on generated datasets in
the official formats, with a seeded checkpoint saved as mmengine saves."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import (REPO, assert_ran, assert_user_error, build_model,
                     config_path, run_script)
from mmengine.logging import HistoryBuffer
from mmengine.runner import save_checkpoint

from rap_sam.testing import make_coco_panoptic, make_youtube_vis
from rap_sam.utils.checkpoint import CheckpointMismatchError

sys.path.insert(0, osp.join(REPO, 'tools'))
import test as test_tool  # noqa: E402

TOY_COCO = 'rap_sam/toy_eval_coco.py'


def seeded_checkpoint(path, config):
    model = build_model(config, seed=0)
    save_checkpoint(
        dict(
            meta=dict(
                epoch=12, seed=np.int64(0), hist=HistoryBuffer([1.0], [1])),
            state_dict=model.state_dict()), str(path))
    return str(path)


def loader_options(root, extra):
    opts = {
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_dataloader.dataset.data_root': root,
    }
    opts.update(extra)
    return [f'{k}={v}' for k, v in opts.items()]


def run_tool(config, ckpt, work_dir, options):
    return test_tool.main([
        config_path(config), ckpt, '--work-dir',
        str(work_dir), '--cfg-options', *options
    ])


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    make_coco_panoptic(str(root), num_images=2, seed=0, image_size=(96, 128))
    return str(root) + '/'


def test_coco_panoptic_end_to_end(tmp_path, coco_root):
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    metrics = run_tool(
        config, ckpt, tmp_path / 'work',
        loader_options(
            coco_root, {
                'test_dataloader.dataset.pipeline.1.scale':
                '(128,96)',
                'test_evaluator.seg_prefix':
                coco_root + 'annotations/panoptic_val2017/',
            }))
    assert {
        'coco_panoptic/PQ', 'coco_panoptic/SQ', 'coco_panoptic/RQ',
        'coco_panoptic/PQ_th', 'coco_panoptic/PQ_st'
    } <= set(metrics)
    assert 0 <= metrics['coco_panoptic/PQ'] <= 100
    # The metrics are also saved in the work dir.
    saved = [
        osp.join(d, f) for d, _, fs in os.walk(tmp_path / 'work') for f in fs
        if f.endswith('.json')
    ]
    assert any('coco_panoptic/PQ' in open(p).read() for p in saved)
    # mmdet's metric keeps its files in a temporary folder of its own,
    # deleted after: no result files to name.
    logs = glob.glob(str(tmp_path / 'work' / '*' / '*.log'))
    assert logs and 'Result files' not in open(logs[0]).read()


def test_a_config_prefix_moves_under_the_run(tmp_path):
    """CocoPanopticMetric's json and its PNG folder alike."""
    from types import SimpleNamespace

    from mmdet.evaluation import CocoPanopticMetric
    mine = CocoPanopticMetric(outfile_prefix='work_dirs/coco/results')
    own = CocoPanopticMetric()  # mmdet's temporary folder
    own_prefix = own.outfile_prefix
    logged = []
    runner = SimpleNamespace(
        test_evaluator=SimpleNamespace(metrics=[mine, own]),
        log_dir=str(tmp_path / 'run'),
        logger=SimpleNamespace(info=logged.append))
    test_tool.own_result_files(runner, SimpleNamespace(cfg_options=None))
    assert mine.outfile_prefix == str(tmp_path / 'run' / 'results')
    assert mine.seg_out_dir == str(tmp_path / 'run' / 'results.panoptic')
    assert own.outfile_prefix == own_prefix
    assert len(logged) == 1 and 'work_dirs/coco/results' in logged[0]


def test_coco_sam_clicks_end_to_end(tmp_path, coco_root):
    """With --out the predictions are dumped too, as mmdet dumps them (masks
    as RLE), and nothing else is left beside the file."""
    import pickle
    config = 'rap_sam/eval_rap_sam_prompt.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    out = tmp_path / 'dump' / 'predictions.pkl'
    metrics = test_tool.main([
        config_path(config), ckpt, '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out), '--cfg-options', *loader_options(
            coco_root,
            {'test_dataloader.dataset.pipeline.2.scale': '(128,96)'})
    ])
    assert 0 <= metrics['coco_sam/mIoU'] <= 1
    assert 1 <= metrics['coco_sam/NoC@0.85'] <= 20
    dumped = pickle.loads(out.read_bytes())
    assert len(dumped) == 2  # the two images
    for sample in dumped:
        masks = sample['pred_instances']['masks']
        assert len(masks) == len(sample['pred_instances']['scores']) > 0
        assert {'size', 'counts'} <= masks[0].keys()
    assert os.listdir(out.parent) == ['predictions.pkl']


@pytest.fixture(scope='module')
def ytvis(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ytvis')) + '/'
    make_youtube_vis(root, num_videos=2, num_frames=4, seed=0)
    config = 'rap_sam/eval_rap_sam_yt19.py'
    ckpt = seeded_checkpoint(tmp_path_factory.mktemp('ck') / 'c.pth', config)
    return root, config, ckpt


def test_youtube_vis_ap_end_to_end(tmp_path, ytvis):
    root, config, ckpt = ytvis
    metrics = run_tool(
        config, ckpt, tmp_path / 'work',
        loader_options(
            root, {
                'test_dataloader.dataset.pipeline.0.transforms.1.scale':
                '(128,96)',
                'test_evaluator.format_only': False,
            }))
    assert 0 <= metrics['youtube_vis/segm_mAP'] <= 1


def test_youtube_vis_server_json(tmp_path, ytvis):
    root, config, ckpt = ytvis
    prefix = str(tmp_path / 'results')
    run_tool(
        config, ckpt, tmp_path / 'work',
        loader_options(
            root, {
                'test_dataloader.dataset.pipeline.0.transforms.1.scale':
                '(128,96)',
                'test_evaluator.outfile_prefix': prefix,
            }))
    with open(prefix + '.json') as f:
        results = json.load(f)
    assert results and {'video_id', 'score', 'category_id', 'segmentations'
                        } <= set(results[0])
    # One RLE (or None) per frame of the video.
    assert len(results[0]['segmentations']) == 4
    assert osp.isfile(prefix + '.submission_file.zip')


def test_youtube_vis_with_the_configs_workers(tmp_path, ytvis):
    """The README's command with the config's loader (2 persistent workers
    send each video's LazyVideo to the main process, which reads the
    frames per clip): the results file is byte for byte the one of loading
    in the main process."""
    root, config, ckpt = ytvis
    scale = {
        'test_dataloader.dataset.pipeline.0.transforms.1.scale': '(128,96)'
    }
    run_tool(
        config, ckpt, tmp_path / 'work0',
        loader_options(
            root,
            dict(scale, **{'test_evaluator.outfile_prefix':
                           f'{tmp_path}/r0'})))
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work2', '--cfg-options',
                      f'test_dataloader.dataset.data_root={root}',
                      f'test_evaluator.outfile_prefix={tmp_path}/r2',
                      *[f'{k}={v}' for k, v in scale.items()])
    assert_ran(proc)
    with open(f'{tmp_path}/r0.json', 'rb') as f0, \
            open(f'{tmp_path}/r2.json', 'rb') as f2:
        want, got = f0.read(), f2.read()
    assert b'segmentations' in want and got == want


def test_checkpoint_with_wrong_keys_is_listed(tmp_path, coco_root):
    config = 'rap_sam/eval_rap_sam_coco.py'
    state = build_model(config).state_dict()
    state.pop('panoptic_head.prompt_iou.bias')
    state['neck.extra.weight'] = torch.zeros(1)
    state['panoptic_head.kernels.weight'] = torch.zeros(50, 256)
    torch.save(dict(state), tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError) as err:
        run_tool(config, str(tmp_path / 'bad.pth'), tmp_path / 'work',
                 loader_options(coco_root, {}))
    message = str(err.value)
    assert '1 missing keys' in message
    assert 'panoptic_head.prompt_iou.bias' in message
    assert 'neck.extra.weight' in message
    assert 'panoptic_head.kernels.weight: checkpoint (50, 256) vs model ' \
        '(100, 256)' in message


def test_dist_test_one_cpu_process(tmp_path, coco_root):
    """torchrun with one process, gloo on CPU; the data root alone is given
    (the tool's --help example): the metric reads that root's PNGs."""
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    options = loader_options(
        coco_root, {'test_dataloader.dataset.pipeline.1.scale': '(128,96)'})
    proc = run_script(
        'tools/dist_test.sh',
        config_path(config),
        ckpt,
        '1',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *options,
        env=dict(PORT='29577'))
    assert_ran(proc)
    assert 'coco_panoptic/PQ' in proc.stdout + proc.stderr
    assert f'test_evaluator.seg_prefix={coco_root}annotations/' \
        'panoptic_val2017/ (the dataset\'s data_root + data_prefix.seg)' \
        in proc.stdout


def test_missing_seg_prefix_is_one_line(tmp_path, coco_root):
    config, ckpt = config_path('rap_sam/eval_rap_sam_coco.py'), __file__
    absent = str(tmp_path / 'pngs') + '/'
    proc = run_script(
        'tools/test.py', config, ckpt, '--work-dir', tmp_path / 'work',
        '--cfg-options',
        *loader_options(coco_root, {'test_evaluator.seg_prefix': absent}))
    assert assert_user_error(proc) == (
        f'error: test_evaluator.seg_prefix {absent} is not a folder (the '
        'panoptic PNGs of the test annotations); pass --cfg-options '
        'test_evaluator.seg_prefix=DIR/, e.g. '
        f'{coco_root}annotations/panoptic_val2017/')
    assert not osp.exists(tmp_path / 'work')


@pytest.mark.parametrize('workers', [0, 1])
def test_a_damaged_png_is_one_line(tmp_path, workers):
    """Evaluation reads every sample: a damaged file stops it with one line
    naming the file (it was a SampleLoadError traceback; from a data loader
    worker, the worker's traceback in the message)."""
    root = tmp_path / 'coco'
    make_coco_panoptic(str(root), num_images=2, seed=0, image_size=(96, 128))
    png = sorted((root / 'annotations' / 'panoptic_val2017').glob('*.png'))[0]
    png.write_bytes(png.read_bytes()[:100])
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    options = loader_options(
        str(root) + '/', {'test_dataloader.num_workers': workers})
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work', '--cfg-options', *options)
    assert assert_user_error(proc) == (
        'error: CocoPanopticOVDataset: sample 0 could not be loaded: '
        f"'{png}' is not a readable image. Copy the file again from the "
        "dataset's source (data/README.md).")


def test_missing_data_root_is_one_line(tmp_path):
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    root = str(tmp_path / 'coco') + '/'
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work', '--cfg-options',
                      *loader_options(root, {}))
    assert assert_user_error(proc).startswith(
        f"error: Data root '{root}' does not exist (it should hold "
        'val2017/*.jpg, train2017/*.jpg, annotations/panoptic_val2017.json, '
        f'annotations/panoptic_val2017/*.png (RGB-encoded segment ids), '
        'annotations/panoptic_train2017.json, .../panoptic_train2017/*.png); '
        f'link your copy there (ln -s /path/to/coco {root[:-1]})')


def test_youtube_vis_results_are_kept_per_run(tmp_path, ytvis, monkeypatch):
    """The config's fixed outfile_prefix (work_dirs/youtube_vis_2019/results
    under the current folder) is replaced by WORK_DIR/TIMESTAMP/results: a
    second run writes beside the first run's files, not over them."""
    root, config, ckpt = ytvis
    monkeypatch.chdir(tmp_path)
    options = loader_options(
        root,
        {'test_dataloader.dataset.pipeline.0.transforms.1.scale': '(128,96)'})
    written = []
    for _ in range(2):
        run_tool(config, ckpt, tmp_path / 'work', options)
        files = sorted(glob.glob(str(tmp_path / 'work' / '*' / 'results.*')))
        written.append([f for f in files if f not in sum(written, [])])
    assert not osp.exists(tmp_path / 'work_dirs')
    first, second = written
    for files in written:
        assert [osp.basename(f) for f in files] == \
            ['results.json', 'results.submission_file.zip']
    assert osp.dirname(first[0]) != osp.dirname(second[0])
    with open(first[0]) as f1, open(second[0]) as f2:
        assert json.load(f1) == json.load(f2) != []


def test_show_dir_draws_with_mmdet_visualizer(tmp_path, coco_root):
    """--show-dir: one drawing per image by mmdet's DetVisualizationHook
    and DetLocalVisualizer, ground truth beside the prediction."""
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    options = loader_options(
        coco_root,
        {
            'test_dataloader.dataset.pipeline.1.scale': '(128,96)',
            'test_evaluator.seg_prefix':
            coco_root + 'annotations/panoptic_val2017/',
            # Random weights are never 0.8 sure: segments to draw.
            'model.test_cfg.object_mask_thr': 0.3,
        })
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work', '--show-dir', 'shown',
                      '--cfg-options', *options)
    assert_ran(proc)
    drawn = sorted(glob.glob(str(tmp_path / 'work' / '*' / 'shown' / '*')))
    images = sorted(glob.glob(coco_root + 'val2017/*.jpg'))
    assert [osp.basename(p) for p in drawn] == \
        [osp.basename(p) for p in images]
    for out, src in zip(drawn, images):
        img, shown = cv2.imread(src), cv2.imread(out)
        h, w = img.shape[:2]
        # Ground truth left, prediction right, both drawn over the photo.
        assert shown.shape == (h, 2 * w, 3)
        for half in (shown[:, :w], shown[:, w:]):
            changed = np.abs(half.astype(int) - img).max(-1) > 40
            assert changed.mean() > 0.2


@pytest.mark.parametrize('shown', ['{tmp}/drawings', '../../drawings'])
def test_show_dir_outside_the_run_never_replaces_files(tmp_path, coco_root,
                                                       shown):
    """A --show-dir outside WORK_DIR/TIMESTAMP (absolute, or climbing out
    with ..) that holds files is refused before the run: the hook drew each
    image under its own name over any file there (the dataset's images,
    for their own folder)."""
    config = 'rap_sam/eval_rap_sam_coco.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    shown = shown.format(tmp=tmp_path)
    # WORK_DIR/TIMESTAMP/../../drawings is tmp_path/drawings too.
    drawings = tmp_path / 'drawings'
    drawings.mkdir()
    for name in sorted(os.listdir(osp.join(coco_root, 'val2017'))):
        (drawings / name).write_text(f'an earlier drawing of {name}')
    before = snapshot(drawings)
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work', '--show-dir', shown, '--cfg-options',
                      *loader_options(coco_root, {}))
    line = assert_user_error(proc)
    assert line == (
        f'error: --show-dir {shown} already holds files (000000000001.jpg, '
        '000000000002.jpg): the drawings, named as the images, would replace '
        'files of the same names; give a new or empty folder, or a relative '
        'name (drawn under WORK_DIR/TIMESTAMP/, new each run).')
    assert snapshot(drawings) == before
    assert not (tmp_path / 'work').exists()


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize('which', ['config', 'checkpoint'])
def test_missing_file_is_one_line(tmp_path, which):
    config, ckpt = config_path('rap_sam/eval_rap_sam_coco.py'), __file__
    if which == 'config':
        config = str(tmp_path / 'absent.py')
    else:
        ckpt = str(tmp_path / 'absent.pth')
    proc = run_script('tools/test.py', config, ckpt, '--work-dir',
                      tmp_path / 'work')
    name = config if which == 'config' else ckpt
    assert assert_user_error(proc).startswith(
        f'error: {which.capitalize()} file not found: {name}')
    assert not osp.exists(tmp_path / 'work')


def _dumped_config(work_dir, name):
    """The config the Runner wrote into the work dir, as it ran."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(work_dir, name))


def test_each_evaluator_follows_its_own_data_root(tmp_path, coco_root):
    """Moving the test and the val dataloaders' data roots moves each
    evaluator's seg_prefix (logged); the run reads the moved root's PNGs.
    A data root the command line does not move keeps the config's."""
    from helpers import toy_checkpoint
    toy_checkpoint(str(tmp_path), TOY_COCO)
    other = str(tmp_path / 'other') + '/'
    work = tmp_path / 'work'
    proc = run_script(
        'tools/test.py', config_path(TOY_COCO), tmp_path / 'toy.pth',
        '--work-dir', work, '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={tmp_path}/embd',
        *loader_options(coco_root,
                        {'val_dataloader.dataset.data_root': other}))
    stdout = assert_ran(proc)
    assert 'coco_panoptic/PQ' in stdout
    moved_test = f'{coco_root}annotations/panoptic_val2017/'
    moved_val = f'{other}annotations/panoptic_val2017/'
    for loop, prefix in (('test', moved_test), ('val', moved_val)):
        assert (f'{loop}_evaluator.seg_prefix={prefix} (the dataset\'s '
                'data_root + data_prefix.seg)') in stdout
    cfg = _dumped_config(work, 'toy_eval_coco.py')
    assert cfg.test_evaluator.seg_prefix == moved_test
    assert cfg.val_evaluator.seg_prefix == moved_val
    assert cfg.val_dataloader.dataset.data_root == other

    # Only the val root moved: the test evaluator keeps the config's.
    cfg = test_tool.build_cfg(
        test_tool.parse_args([
            config_path(TOY_COCO), __file__, '--work-dir',
            str(work), '--cfg-options',
            f'val_dataloader.dataset.data_root={other}'
        ]))
    assert cfg.test_evaluator.seg_prefix == \
        'work_dirs/toy/data/coco/annotations/panoptic_val2017/'
    assert cfg.val_evaluator.seg_prefix == moved_val


def test_a_given_seg_prefix_wins_over_the_data_root(tmp_path, coco_root):
    given = coco_root + 'annotations/panoptic_val2017/'
    cfg = test_tool.build_cfg(
        test_tool.parse_args([
            config_path(TOY_COCO), __file__, '--work-dir',
            str(tmp_path), '--cfg-options',
            'test_dataloader.dataset.data_root=/elsewhere/',
            f'test_evaluator.seg_prefix={given}'
        ]))
    assert cfg.test_evaluator.seg_prefix == given


def test_a_work_dir_that_is_a_file_is_one_line(tmp_path, coco_root):
    config, ckpt = config_path('rap_sam/eval_rap_sam_coco.py'), __file__
    path = tmp_path / 'f'
    path.write_text('x\n')
    proc = run_script('tools/test.py', config, ckpt, '--work-dir', path,
                      '--cfg-options', *loader_options(coco_root, {}))
    assert assert_user_error(proc) == (
        f'error: The work dir {path} is a file: give --work-dir a folder (it '
        'is created if missing), or move the file away.')
    assert path.read_text() == 'x\n'


def test_an_evaluation_into_a_held_work_dir_is_refused(tmp_path, coco_root):
    """Two runs in one work dir started in the same second would write one
    WORK_DIR/TIMESTAMP (log, metrics, result files): while a run (here a
    training) holds it, an evaluation ends with one line naming it and
    writes nothing."""
    work = tmp_path / 'work'
    work.mkdir()
    holder = subprocess.Popen([
        sys.executable, '-c', 'import sys, time\n'
        'from rap_sam.utils.work_dir_lock import lock_work_dir\n'
        'lock = lock_work_dir(sys.argv[1], "training")\n'
        'print("locked", flush=True)\n'
        'time.sleep(600)\n',
        str(work)
    ],
                              cwd=REPO,
                              stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == 'locked\n'
        with open(work / '.lock') as f:
            before = f.read()
        proc = run_script('tools/test.py',
                          config_path('rap_sam/eval_rap_sam_coco.py'),
                          __file__, '--work-dir', work, '--cfg-options',
                          *loader_options(coco_root, {}))
        assert assert_user_error(proc) == (
            f'error: {work} is in use by a training (PID {holder.pid}): '
            'wait for it or choose another --work-dir.')
        assert os.listdir(work) == ['.lock']
        with open(work / '.lock') as f:
            assert f.read() == before
    finally:
        holder.kill()
        holder.wait()


def test_show_dir_draws_the_prompt_evaluation(tmp_path, coco_root):
    """Its ground truth comes at the network's scale (loaded before the
    resize; it failed mmdet's shape check): drawn scaled to the photo
    (96 x 128 photos run at half their size)."""
    config = 'rap_sam/eval_rap_sam_prompt.py'
    ckpt = seeded_checkpoint(tmp_path / 'ckpt.pth', config)
    proc = run_script(
        'tools/test.py', config_path(config), ckpt, '--work-dir',
        tmp_path / 'work', '--show-dir', 'shown', '--cfg-options',
        *loader_options(
            coco_root,
            {'test_dataloader.dataset.pipeline.2.scale': '(64,48)'}))
    assert_ran(proc)
    drawn = sorted(glob.glob(str(tmp_path / 'work' / '*' / 'shown' / '*')))
    images = sorted(glob.glob(coco_root + 'val2017/*.jpg'))
    assert [osp.basename(p) for p in drawn] == \
        [osp.basename(p) for p in images]
    for out, src in zip(drawn, images):
        img, shown = cv2.imread(src), cv2.imread(out)
        h, w = img.shape[:2]
        assert shown.shape == (h, 2 * w, 3)
        # The ground truth's objects are drawn over the whole photo, not
        # in its top-left corner only.
        changed = np.abs(shown[:, :w].astype(int) - img).max(-1) > 40
        assert changed[h // 2:].any() and changed[:, w // 2:].any()


def test_show_dir_of_a_video_config_is_one_line(tmp_path, ytvis):
    root, config, ckpt = ytvis
    proc = run_script('tools/test.py', config_path(config), ckpt, '--work-dir',
                      tmp_path / 'work', '--show-dir', 'shown')
    assert_user_error(
        proc, f'--show-dir draws image configs only: {config_path(config)} '
        "evaluates videos, which mmdet's DetVisualizationHook cannot draw")
    assert not glob.glob(str(tmp_path / 'work' / '*' / 'shown'))


@pytest.mark.parametrize('case', [
    'out is the checkpoint', 'out exists', 'out is a folder',
    'out under a file', 'a training config', 'misspelt option',
    'misspelt model part', 'zero batch'
])
def test_mistakes_are_one_line_before_the_evaluation(tmp_path, case):
    """--out replaced an earlier dump, or the evaluated checkpoint itself,
    silently, or failed after the whole evaluation; a misspelt parent key
    evaluated the config's default data (or, under model, was a
    traceback)."""
    ckpt = tmp_path / 'model.pkl'
    ckpt.write_bytes(b'weights')
    (tmp_path / 'earlier.pkl').write_bytes(b'earlier predictions')
    (tmp_path / 'dump.pkl').mkdir()
    config = config_path('rap_sam/eval_rap_sam_coco.py')
    args, message = {
        'out is the checkpoint':
        (['--out', ckpt], f'--out {ckpt} is the checkpoint being evaluated'),
        'out exists': ([
            '--out', tmp_path / 'earlier.pkl', '--out',
            tmp_path / 'earlier.pkl'
        ], f"--out {tmp_path / 'earlier.pkl'} exists: name another file, "
                       'or pass --overwrite to replace it.'),
        'out is a folder': (['--out', tmp_path / 'dump.pkl'],
                            f"--out {tmp_path / 'dump.pkl'} is a folder"),
        'out under a file':
        (['--out', ckpt / 'x.pkl'], f'{ckpt} is a file, not a folder'),
        'a training config': ([], 'is not an evaluation config'),
        'misspelt option': (['--cfg-options', 'test_dataloadr.batch_size=1'],
                            "the config has no 'test_dataloadr'"),
        # A TypeError from MaskFormer's keywords (the model's parts were
        # not checked).
        'misspelt model part':
        (['--cfg-options', 'model.panoptc_head.num_queries=5'],
         "the config has no 'model.panoptc_head'"),
        'zero batch': (['--cfg-options', 'test_dataloader.batch_size=0'],
                       'test_dataloader.batch_size must be a whole number '
                       '>= 1, got 0'),
    }[case]
    if case == 'a training config':
        config = config_path('rap_sam/toy_rap_sam_train.py')
    proc = run_script('tools/test.py', config, ckpt, '--work-dir',
                      tmp_path / 'work', *args)
    assert message in assert_user_error(proc)
    assert not osp.exists(tmp_path / 'work')
    assert ckpt.read_bytes() == b'weights'
    assert (tmp_path / 'earlier.pkl').read_bytes() == b'earlier predictions'
