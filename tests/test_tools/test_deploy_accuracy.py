"""tools/analysis/deploy_accuracy.py as a user runs it: the toy
architecture with seeded weights, int8 on ONNX Runtime against fp32, on a
photo and on a tiny COCO panoptic val set (PQ and click mIoU); bad input
ends in one line before any export.

Costs about 3 minutes on a busy 2-core machine: the comparison run, then
about 10 s (a process start) for each refusal."""
import json
import os
import os.path as osp

import cv2
import pytest
from helpers import (REPO, assert_ran, assert_usage_error, assert_user_error,
                     load_tool, run_script, toy_checkpoint)

from rap_sam.testing import make_coco_panoptic

TOOL = 'tools/analysis/deploy_accuracy.py'
TOY = 'rap_sam/toy_eval_coco.py'
CONFIG = f'configs/{TOY}'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A seeded toy checkpoint, its class embeddings, a 2-image COCO
    panoptic val set and a calibration folder."""
    root = tmp_path_factory.mktemp('toy')
    toy_checkpoint(root, TOY)
    make_coco_panoptic(str(root / 'coco'), num_images=2)
    calib = root / 'calib'
    calib.mkdir()
    photo = cv2.imread(osp.join(REPO, 'demo', 'demo.jpg'))
    for i, size in enumerate([(120, 80), (80, 120)]):
        cv2.imwrite(str(calib / f'{i}.jpg'), cv2.resize(photo, size))
    cv2.imwrite(str(root / 'photo.jpg'), cv2.resize(photo, (150, 100)))
    return root


def test_int8_against_fp32_on_photo_and_test_sets(toy):
    coco = toy / 'coco'
    args = [
        CONFIG, '--checkpoint',
        str(toy / 'toy.pth'), '--calib',
        str(toy / 'calib'), '--modes', 'onnxruntime:int8', '--threads', '1',
        '--photos',
        str(toy / 'photo.jpg'), '--eval-configs', CONFIG,
        'configs/rap_sam/toy_eval_prompt.py', '--work-dir',
        str(toy / 'work'), '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={toy / "embd"}',
        f'test_dataloader.dataset.data_root={coco}/',
        f'test_evaluator.seg_prefix={coco}/annotations/panoptic_val2017/'
    ]
    proc = run_script(TOOL, *args)
    assert_ran(proc)
    assert '| onnxruntime:int8 | 1 |' in proc.stdout
    written = (toy / 'work' / 'deploy_accuracy.json').read_bytes()
    # A second run into the same folder replaced them without a word.
    again = run_script(TOOL, *args)
    assert assert_user_error(again).startswith(
        f"error: {toy / 'work'} holds an earlier run (deploy_accuracy.json, "
        'fp32, int8): pass --overwrite to replace its exports and report')
    assert (toy / 'work' / 'deploy_accuracy.json').read_bytes() == written
    report = json.loads((toy / 'work' / 'deploy_accuracy.json').read_text())
    assert report['scale'] == [128, 128]
    entry = report['modes']['onnxruntime:int8']
    summary = entry['photo_summary']
    assert summary['photos'] == 1
    for key in ('segments', 'instances'):
        assert 0 <= summary[key]['kept'] <= summary[key]['ref']
        assert 0 <= summary[key]['min_iou'] <= summary[key]['mean_iou'] <= 1
    assert 0.5 < summary['panoptic_agreement'] <= 1
    assert 0.5 < summary['click_mean_iou'] <= 1
    coco_metrics = entry['datasets']['toy_eval_coco.py']
    prompt_metrics = entry['datasets']['toy_eval_prompt.py']
    for metrics in (coco_metrics, prompt_metrics):
        assert set(metrics) == {'fp32', 'mode'}
    assert 0 <= coco_metrics['mode']['coco_panoptic/PQ'] <= 100
    assert 0 <= prompt_metrics['mode']['coco_sam/mIoU'] <= 1
    # Two clicks per val image at least: both evaluations saw the images.
    assert prompt_metrics['fp32']['coco_sam/num_clicks'] >= 2
    # The fp32 export is left beside the int8 one.
    assert osp.isfile(toy / 'work' / 'fp32' / 'image_encoder.onnx')
    assert osp.isfile(toy / 'work' / 'int8' / 'image_encoder.onnx')
    # The report was written whole, under a temporary name first.
    assert not [n for n in os.listdir(toy / 'work') if n.startswith('.')]


@pytest.mark.parametrize('case', [
    'no_calib', 'empty_calib', 'bad_mode', 'no_photo', 'no_eval_config',
    'work_dir_is_a_file', 'override_without_value', 'misspelt_int8_module',
    'misspelt_int8_graph', 'misspelt_option_parent', 'misspelt_option_key',
    'video_eval_config', 'training_eval_config'
])
def test_bad_input_is_one_line_before_any_export(toy, tmp_path, case):
    """Each is said before the exports, which take minutes at full size
    (the photos, eval configs and overrides were read after them)."""
    work = tmp_path / 'work'
    if case == 'work_dir_is_a_file':
        work.write_text('keep me')
    args = [CONFIG, '--checkpoint', str(toy / 'toy.pth'), '--work-dir', work]
    if case not in ('no_calib', 'empty_calib', 'bad_mode'):
        args += ['--calib', toy / 'calib', '--modes', 'onnxruntime:int8']
    args += {
        'empty_calib': ['--calib', str(tmp_path)],
        'bad_mode': ['--calib',
                     str(toy / 'calib'), '--modes', 'torch:int8'],
        'no_photo': ['--photos', tmp_path / 'no.jpg'],
        'no_eval_config': ['--eval-configs', tmp_path / 'no.py'],
        # Both were an AttributeError after the exports, in the first
        # evaluation (a video sample has no img_path; no test_dataloader).
        'video_eval_config':
        ['--eval-configs', 'configs/rap_sam/toy_eval_yt19.py'],
        'training_eval_config':
        ['--eval-configs', 'configs/rap_sam/toy_rap_sam_train.py'],
        'override_without_value': ['--cfg-options', 'model.test_cfg'],
        # the class embeddings found: only the graph's or module's name is
        # wrong
        'misspelt_int8_graph': [
            '--int8-graphs', 'image_encoder', 'prompt_decodr', '--cfg-options',
            f'model.panoptic_head.ov_classifier_dir={toy / "embd"}'
        ],
        'misspelt_int8_module': [
            '--int8-modules', 'neck', 'bakcbone', '--cfg-options',
            f'model.panoptic_head.ov_classifier_dir={toy / "embd"}'
        ],
        # It was added and changed nothing.
        'misspelt_option_parent':
        ['--cfg-options', 'model.nek.dcn_impl=torch'],
        # It was the model builder's TypeError traceback.
        'misspelt_option_key': [
            '--cfg-options', 'model.neck.dcn_imp=torch',
            f'model.panoptic_head.ov_classifier_dir={toy / "embd"}'
        ],
    }.get(case, [])
    assert_user_error(
        run_script(TOOL, *args), *{
            'no_calib': ['needs calibration images'],
            'empty_calib': ['No images in the calibration folder'],
            'bad_mode': [
                'int8 runs on an int8 export (onnxruntime or openvino), not '
                'on torch'
            ],
            'no_photo': ['Image not found', 'no.jpg'],
            'no_eval_config': ['Config file not found', 'no.py'],
            'video_eval_config': [
                '--eval-configs configs/rap_sam/toy_eval_yt19.py evaluates '
                'videos'
            ],
            'training_eval_config': [
                '--eval-configs configs/rap_sam/toy_rap_sam_train.py is not '
                'an evaluation config'
            ],
            'work_dir_is_a_file': [str(work), 'is a file'],
            'override_without_value':
            ["--cfg-options takes key=value items, got 'model.test_cfg'"],
            'misspelt_int8_graph': [
                "--int8-graphs: no graph 'prompt_decodr' in an export; "
                'choose from image_encoder, panoptic_decoder, prompt_decoder.'
            ],
            'misspelt_int8_module': [
                "--int8-modules: no module 'bakcbone' in the model; choose "
                'from backbone, neck, panoptic_head.'
            ],
            'misspelt_option_parent': [
                "--cfg-options model.nek.dcn_impl: the config has no "
                "'model.nek'"
            ],
            'misspelt_option_key': [
                '--cfg-options model.neck.dcn_imp=torch:',
                "unexpected keyword argument 'dcn_imp'"
            ],
        }[case])
    if case == 'work_dir_is_a_file':
        assert work.read_text() == 'keep me'
    else:  # failed before any export
        assert not osp.exists(work / 'fp32')


@pytest.mark.parametrize(
    'option', ['--threads', '--max-images', '--max-calib-images', '--scale'])
def test_counts_below_one_are_usage_errors(option):
    args = [option, '0'] + (['64'] if option == '--scale' else [])
    assert_usage_error(
        run_script(TOOL, CONFIG, '--checkpoint', 'x.pth', *args), option,
        'whole number >= 1')


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    """Ctrl+C during the exports or the comparison (KeyboardInterrupt) ends
    the tool with one line and the shell's status for it, 128 + SIGINT."""
    tool = load_tool(TOOL)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, 'compare', interrupted)
    with pytest.raises(SystemExit) as exit_:
        tool.main([CONFIG, '--checkpoint', 'x.pth'])
    assert exit_.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        'error: interrupted (Ctrl+C); the exports in --work-dir may be '
        'incomplete; run again with --overwrite to replace them.'
    ]


def test_trust_checkpoint_is_the_refusals_advice(toy, tmp_path):
    """A checkpoint holding an object a weights-only load refuses: the
    error's advice (--trust-checkpoint) is an option of the tool, and with
    it the file is read (here its weights then hold a NaN: said in one line
    too, before any export)."""
    import datetime

    import torch
    state = torch.load(toy / 'toy.pth', weights_only=True)['state_dict']
    diverged = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[diverged] = torch.full_like(state[diverged], float('nan'))
    ckpt = tmp_path / 'with_timing.pth'
    torch.save(
        dict(state_dict=state, elapsed=datetime.timedelta(seconds=3)), ckpt)
    work = tmp_path / 'work'
    args = [
        CONFIG, '--checkpoint', ckpt, '--modes', 'torch:bf16', '--photos',
        toy / 'photo.jpg', '--work-dir', work, '--cfg-options',
        f'model.panoptic_head.ov_classifier_dir={toy / "embd"}'
    ]
    assert_user_error(
        run_script(TOOL, *args), str(ckpt), 'datetime.timedelta',
        'pass --trust-checkpoint')
    assert assert_user_error(run_script(
        TOOL, *args, '--trust-checkpoint')) == (
            f'error: {ckpt} holds NaN or infinite weights in 1 tensor(s): '
            f'{diverged}; the run that wrote it probably diverged: use an '
            'earlier checkpoint')
    assert not osp.exists(work / 'fp32')
