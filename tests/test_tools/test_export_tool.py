"""tools/deploy/export.py as the README runs it: a toy model's seeded
checkpoint exported, the folder run in ONNX Runtime against the torch model
loaded from the same checkpoint; int8 and a class file; bad inputs are
one-line errors that leave the files alone."""
import json
import os
import os.path as osp
import re
import shutil

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import (REPO, assert_ran, assert_user_error, config_path,
                     load_tool, random_class_embeddings, run_script,
                     toy_checkpoint)
from mmdet.structures import DetDataSample

from rap_sam.deploy.deploy_spec import read_deploy_spec
from rap_sam.utils.class_embeddings import class_embedding_path
from rap_sam.utils.openclip_loader import (DEFAULT_CLIP_MODEL,
                                           DEFAULT_CLIP_PRETRAINED)
from rap_sam.utils.text_classifier import vocabulary_name
from rap_sam.utils.user_errors import UserError

TOOL = 'tools/deploy/export.py'
TOY = 'rap_sam/toy_eval_coco.py'


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A seeded toy checkpoint and the class-embedding folder its config
    reads (as tools/toy_train_eval.py writes them)."""
    root = tmp_path_factory.mktemp('toy')
    model = toy_checkpoint(root, TOY)
    ckpt, embd = root / 'toy.pth', root / 'embd'
    options = [
        '--cfg-options', f'model.panoptic_head.ov_classifier_dir={embd}'
    ]
    return model, str(ckpt), options


@pytest.fixture(scope='module')
def exported(toy, tmp_path_factory):
    _, ckpt, options = toy
    out = tmp_path_factory.mktemp('exports') / 'toy'
    proc = run_script(TOOL, config_path(TOY), '--checkpoint', ckpt, '--out',
                      out, '--scale', 64, 64, *options)
    assert_ran(proc)
    return str(out), proc


def sessions(out):
    spec = read_deploy_spec(out)
    return spec, {
        name:
        ort.InferenceSession(
            osp.join(out, file), providers=['CPUExecutionProvider'])
        for name, file in spec.graph_files.items()
    }


def test_export_runs_in_onnxruntime(toy, exported):
    """The folder holds the three graphs and deploy.json; ONNX Runtime
    gives the checkpoint's model's panoptic and prompt outputs."""
    model, _, _ = toy
    out, proc = exported
    assert sorted(os.listdir(out)) == [
        'deploy.json', 'image_encoder.onnx', 'panoptic_decoder.onnx',
        'prompt_decoder.onnx'
    ]
    assert out in proc.stdout
    spec, sess = sessions(out)
    assert spec['config'] == 'toy_eval_coco.py'
    assert spec['precision'] == 'fp32' and spec['dynamic'] is False
    assert spec['preprocess']['scale'] == [64, 64]
    assert spec['preprocess']['pad_shape'] == [64, 64]
    assert spec['classes'][:2] == ['person', 'bicycle']
    assert len(spec['classes']) == 133 and spec['num_things'] == 80

    image, meta = spec.image_preprocessor()(
        cv2.imread(osp.join(REPO, 'demo', 'demo.jpg')))
    feats = dict(
        zip(spec.feature_names,
            sess['image_encoder'].run(None, {'image': image})))
    with torch.no_grad():
        ref = model.extract_feat(torch.from_numpy(image))
        cls, masks, _, _ = model.panoptic_head.predict(ref, [DetDataSample()])
    close = dict(rtol=1e-3, atol=1e-4)
    got_cls, got_masks = sess['panoptic_decoder'].run(None, feats)
    assert got_cls.shape == (1, 30, 134)
    torch.testing.assert_close(torch.from_numpy(got_cls), cls, **close)
    torch.testing.assert_close(torch.from_numpy(got_masks), masks, **close)
    h, w = meta['img_shape'][:2]
    p_cls, p_masks, p_iou = sess['prompt_decoder'].run(
        None,
        dict(
            feats,
            boxes=np.array([[2., 2., 8., 8.], [0., 0., w, h]], np.float32),
            img_shape=np.array([h, w], spec.img_shape_dtype)))
    assert p_cls.shape == (1, 2, 134) and p_iou.shape == (1, 2, 1)
    assert p_masks.shape == (1, 2, 16, 16)


@pytest.fixture
def class_file(tmp_path):
    """A class file and what tools/gen_cls.py would have cached for it
    (no CLIP weights here: seeded 64-d stand-ins under its content name)."""
    classes = ['coffee cup,mug', 'saucer', 'table,desk']
    path = tmp_path / 'classes.txt'
    path.write_text('\n'.join(classes) + '\n')
    cached = class_embedding_path(
        vocabulary_name(classes, DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED))
    torch.save(random_class_embeddings(3, 2, dim=64, seed=5), cached)
    yield str(path)
    os.remove(cached)


def test_int8_with_a_class_file_over_an_earlier_export(toy, exported,
                                                       class_file, tmp_path):
    _, ckpt, options = toy
    out = tmp_path / 'toy'
    shutil.copytree(exported[0], out)
    calib = tmp_path / 'calib'
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(
            str(calib / f'{i}.jpg'),
            rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    proc = run_script(TOOL, config_path(TOY), '--checkpoint', ckpt, '--out',
                      out, '--scale', 64, 64, '--precision', 'int8', '--calib',
                      calib, '--classes', class_file, '--num-things', 2,
                      '--overwrite', *options)
    assert_ran(proc)
    spec, sess = sessions(str(out))
    assert spec.precision == 'int8'
    assert spec['classes'] == ['coffee cup', 'saucer', 'table']
    assert spec['num_things'] == 2
    # No fp32 folder is left beside the int8 one.
    assert sorted(os.listdir(tmp_path)) == ['calib', 'classes.txt', 'toy']
    image = np.zeros(
        spec['graphs']['image_encoder']['inputs']['image']['shape'],
        np.float32)
    feats = dict(
        zip(spec.feature_names,
            sess['image_encoder'].run(None, {'image': image})))
    cls, _ = sess['panoptic_decoder'].run(None, feats)
    assert cls.shape == (1, 30, 4)  # 3 classes and the background


def test_bf16_is_the_fp32_graphs_marked_for_openvino(toy, exported, tmp_path):
    """bf16 needs no calibration: the fp32 graphs, byte for byte, with
    deploy.json saying bf16 (OpenVINO's precision hint)."""
    _, ckpt, options = toy
    out = tmp_path / 'toy'
    proc = run_script(TOOL, config_path(TOY), '--checkpoint', ckpt, '--out',
                      out, '--scale', 64, 64, '--precision', 'bf16', *options)
    assert_ran(proc)
    assert 'bf16 export of toy_eval_coco.py' in proc.stdout
    spec = read_deploy_spec(str(out))
    assert spec.precision == 'bf16'
    assert sorted(os.listdir(tmp_path)) == ['toy']
    fp32 = read_deploy_spec(exported[0])
    for file in fp32.graph_files.values():
        with open(osp.join(out, file), 'rb') as a, \
                open(osp.join(exported[0], file), 'rb') as b:
            assert a.read() == b.read(), file


# Bad inputs, checked before the model is built: (options, message).
BAD = {
    'missing config': (['--config', 'absent.py'], 'Config file not found'),
    'missing checkpoint': (['--checkpoint',
                            'absent.pth'], 'Checkpoint file not found: '),
    'out not empty': ([], 'is not empty: choose another --out or pass '
                      '--overwrite'),
    'overwrite not an export':
    (['--overwrite'], 'is not an export folder (no deploy.json)'),
    'int8 without calib':
    (['--precision', 'int8'], 'int8 quantization needs calibration images'),
    'calib not found': (['--precision', 'int8', '--calib',
                         'absent'], 'Calibration folder not found'),
    'calib without int8': (['--calib', '.'], '--calib is for --precision '
                           'int8'),
    'percentile without int8':
    (['--calibration', 'percentile'], '--calibration percentile is for '
     '--precision int8; drop it'),
    'weight bits without int8': (['--int8-weight-bits', '7'],
                                 '--int8-weight-bits 7 is for --precision '
                                 'int8; drop it'),
    'num-things alone': (['--num-things',
                          '2'], '--num-things goes with --classes FILE'),
    'class file not found': (['--classes',
                              'absent.txt'], 'Class file not found'),
    # A memory traceback after the model was built.
    'shape too large': (['--shape', '100000', '100000'],
                        '--shape (100000, 100000) has a side above 8192'),
    'scale larger than shape':
    (['--scale', '128', '128', '--shape', '64',
      '64'], 'does not fit the input shape'),
}
# Run as subprocesses (the rest in-process: each start costs seconds).
BAD_COMMANDS = ('missing config', 'missing checkpoint', 'out not empty',
                'int8 without calib')


def bad_command(case, tmp_path):
    options, message = BAD[case]
    out = tmp_path / 'out'
    if case.startswith(('out', 'overwrite')):
        out.mkdir()
        (out / 'keep.txt').write_text('mine')
    config = config_path(TOY)
    if options[:1] == ['--config']:
        config, options = str(tmp_path / options[1]), options[2:]
    options = [
        str(tmp_path / o) if o.startswith('absent') else o for o in options
    ]
    return [config, '--out', str(out), *options], message


def assert_untouched(tmp_path, before):
    assert sorted(os.listdir(tmp_path)) == before
    out = tmp_path / 'out'
    if out.exists():
        assert os.listdir(out) == ['keep.txt']
        assert (out / 'keep.txt').read_text() == 'mine'


@pytest.mark.parametrize('case', BAD_COMMANDS)
def test_bad_input_is_one_line_and_leaves_files(case, tmp_path):
    argv, message = bad_command(case, tmp_path)
    before = sorted(os.listdir(tmp_path))
    proc = run_script(TOOL, *argv)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
    assert message in lines[0]
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize('case', sorted(set(BAD) - set(BAD_COMMANDS)))
def test_bad_input_messages(case, tmp_path):
    argv, message = bad_command(case, tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UserError) as err:
        load_tool(TOOL).main(argv)
    assert message in str(err.value) and '\n' not in str(err.value)
    assert_untouched(tmp_path, before)


def test_an_empty_out_keeps_the_working_directory(tmp_path):
    """``--out ''`` resolved to the working directory, which the export
    replaced (its files deleted) before failing on the empty name."""
    (tmp_path / 'notes.txt').write_text('mine')
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', '', cwd=str(tmp_path)))
    assert line == ('error: The output folder is an empty name: name the '
                    'folder to write the export to.')
    assert os.listdir(tmp_path) == ['notes.txt']


def test_outs_the_export_cannot_be_put_at(tmp_path):
    """Said before the model is built (a traceback after tracing)."""
    (tmp_path / 'notes.txt').write_text('mine')
    tool = load_tool(TOOL)
    with pytest.raises(UserError, match='notes.txt is a file, not a folder'):
        tool.main([config_path(TOY), '--out', str(tmp_path / 'notes.txt/x')])
    mount = next(
        m for m in ('/dev/shm', '/proc', '/sys', '/dev') if osp.ismount(m))
    with pytest.raises(UserError, match='is a mount point'):
        tool.main([config_path(TOY), '--out', mount, '--overwrite'])
    assert os.listdir(tmp_path) == ['notes.txt']


def test_a_folder_the_kernel_will_not_write_in_is_one_line(tmp_path):
    """os.access says yes to root for /sys, whose folders refuse new
    entries: the export was a PermissionError traceback when it made its
    work folder there."""
    proc = run_script(TOOL, config_path(TOY), '--out', '/sys/kernel/rap_sam')
    line = assert_user_error(proc)
    assert re.fullmatch(
        r'error: Cannot write /sys/kernel: (Operation not permitted|'
        r'Permission denied); choose a folder you can write to\.', line), line
    assert not osp.exists('/sys/kernel/rap_sam')


def test_refused_export_keeps_an_export(exported, tmp_path):
    """A refused export over an earlier one leaves it byte for byte."""
    out = tmp_path / 'toy'
    shutil.copytree(exported[0], out)
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    proc = run_script(TOOL, config_path(TOY), '--out', out, '--precision',
                      'int8', '--overwrite')
    assert proc.returncode == 2 and '--calib DIR' in proc.stderr
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    json.loads((out / 'deploy.json').read_text())


def test_overwrite_keeps_files_that_are_not_the_exports(exported, tmp_path):
    """--overwrite replaced the whole folder: a calibration folder kept in
    the export, read by the same run, was deleted with it."""
    out = tmp_path / 'toy'
    shutil.copytree(exported[0], out)
    (out / 'calib').mkdir()
    (out / 'README.txt').write_text('mine')
    before = sorted(os.listdir(out))
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', out, '--overwrite'))
    assert line == (f"error: {out} holds files that are not the export's "
                    '(README.txt, calib), which --overwrite would delete: '
                    'move them out or choose another --out.')
    assert sorted(os.listdir(out)) == before


def test_a_config_option_without_a_value_is_one_line(tmp_path):
    # It was mmengine's DictAction ValueError traceback.
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                   '--cfg-options', 'model.foo'))
    assert line.startswith('error: --cfg-options takes key=value items, '
                           'e.g. model.test_cfg.max_per_image=50')
    assert not (tmp_path / 'out').exists()


def test_a_calibration_folder_without_a_readable_image_is_said_first(tmp_path):
    """It was found after the fp32 export (minutes at full size); an
    unreadable file beside readable ones is skipped with a warning
    (tests/test_deploy/test_calibration.py)."""
    calib = tmp_path / 'calib'
    calib.mkdir()
    (calib / 'b.jpg').write_bytes(b'not a picture')
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                   '--precision', 'int8', '--calib', calib))
    assert line.startswith(
        f'error: No readable image in the calibration folder {calib}: its '
        'one image file cannot be read (b.jpg (')
    assert not (tmp_path / 'out').exists()


def test_an_unreadable_calibration_file_is_said_once(tmp_path):
    """The tool chooses the images before the fp32 export and hands them to
    the quantizer: the skipped file is one warning line, not two, and the
    export is calibrated on the readable images."""
    calib = tmp_path / 'calib'
    calib.mkdir()
    for name in ('a', 'c'):
        shutil.copy(osp.join(REPO, 'demo', 'demo.jpg'), calib / f'{name}.jpg')
    (calib / 'b.jpg').write_bytes(b'not a picture')
    proc = run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                      '--precision', 'int8', '--calib', calib, '--shape', 64,
                      96, '--int8-weight-bits', 7)
    assert proc.returncode == 0, proc.stderr
    warned = [
        line for line in proc.stderr.splitlines() if 'unreadable' in line
    ]
    assert warned == [
        f'warning: Calibration folder {calib}: skipped 1 unreadable file: '
        'b.jpg (not an image); calibrating on 2 images.'
    ]
    spec = json.loads((tmp_path / 'out' / 'deploy.json').read_text())
    assert (spec['precision'], spec['calibration_images'],
            spec['int8_weight_bits']) == ('int8', 2, 7)


@pytest.mark.parametrize('num_things', [-3, 4])
def test_num_things_outside_the_class_file_is_said_first(num_things, tmp_path):
    """It was the API's ``num_things`` message, after the model was built
    (a random-weights warning first, and seconds at full size): now the
    option's own line, before the build, naming the class file."""
    classes = tmp_path / 'classes.txt'
    classes.write_text('coffee cup,mug\nsaucer\ntable,desk\n')
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                   '--classes', classes, '--num-things', num_things))
    assert line == (f'error: --num-things must be from 0 to the 3 classes '
                    f'of {classes}, got {num_things}.')
    # Nothing built: no random-weights warning before the line (one line
    # on stderr) and no folder made.
    assert sorted(os.listdir(tmp_path)) == ['classes.txt']


def test_a_bad_class_file_is_said_before_the_model_is_built(tmp_path):
    """Without --num-things the class file was read only after the build
    (a random-weights warning first, and seconds at full size)."""
    classes = tmp_path / 'classes.txt'
    classes.write_text('cup\nmug\ncup\n')
    line = assert_user_error(
        run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                   '--classes', classes))
    assert line == (f'error: {classes}, line 3: the class \'cup\' is '
                    'already on line 1: list each class once (synonyms '
                    'comma-separated on its line).')
    assert sorted(os.listdir(tmp_path)) == ['classes.txt']


def test_ctrl_c_while_the_graphs_are_written_leaves_nothing(tmp_path):
    """A Ctrl+C once the export's work folder exists: one line, the
    shell's status for it, and neither the work folder nor --out left."""
    import signal
    import time

    from helpers import start_in_terminal
    out = tmp_path / 'out'
    proc = start_in_terminal(TOOL, config_path(TOY), '--out', out)
    try:
        deadline = time.monotonic() + 240
        while not any(name != 'out' for name in os.listdir(tmp_path)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, 'no work folder was made'
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # (The random-weights banner and warnings come before it.)
    assert proc.returncode == 130, stderr
    assert 'Traceback' not in stderr, stderr
    assert stderr.splitlines()[-1] == 'error: interrupted (Ctrl+C).'
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('option, words', [
    ('model.nek.dcn_impl=torch', "the config has no 'model.nek'"),
    ('model.neck.dcn_imp=torch',
     "unexpected keyword argument 'dcn_imp'; check the spelling"),
])
def test_a_misspelt_config_option_is_one_line(tmp_path, option, words):
    """A misspelt parent key was added and changed nothing; a misspelt
    last key ended in the builder's TypeError traceback."""
    proc = run_script(TOOL, config_path(TOY), '--out', tmp_path / 'out',
                      '--cfg-options', option)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: --cfg-options {option.split("=")[0]}')
    assert words in last
    assert not (tmp_path / 'out').exists()
