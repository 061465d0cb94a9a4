"""The demos as a user runs them (a subprocess from the repository root):
each kind of bad input ends with one line, ``error: ...``, exit status 2
and no traceback; inputs and earlier results are never written over."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from helpers import (REPO, assert_ran, assert_usage_error, assert_user_error,
                     run_script)

COCO = 'configs/rap_sam/eval_rap_sam_coco.py'
YT19 = 'configs/rap_sam/eval_rap_sam_yt19.py'
SMALL = ['--scale', '64', '64']


def snapshot(folder) -> dict:
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(folder.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def files(tmp_path_factory, small_photo, weights):
    d = tmp_path_factory.mktemp('inputs')
    (d / 'notes.txt').write_text('not a checkpoint\n')
    with open(weights, 'rb') as f:
        (d / 'truncated.pth').write_bytes(f.read(4096))
    cv2.imwrite(str(d / 'thin.png'), np.full((1, 5000, 3), 128, np.uint8))
    (d / 'a_file').write_text('x')
    return d


@pytest.mark.parametrize(
    'args, message',
    [
        # The seed's command, verbatim (no checkpoint in the repository).
        ([
            'demo/demo.jpg', 'configs/rap_sam/eval_rap_sam_coco.py',
            '--weights', 'rapsam_r50_12e.pth'
        ], 'Checkpoint file not found: rapsam_r50_12e.pth'),
        (['{photo}', 'configs/rap_sam/nope.py'
          ], 'Config file not found: configs/rap_sam/nope.py'),
        (['{photo}', COCO, '--weights', '{d}/truncated.pth'
          ], '{d}/truncated.pth'),
        (['{photo}', COCO, '--weights', '{d}/notes.txt'], '{d}/notes.txt'),
        (['{photo}', COCO, '--scale', '0', '0'], 'scale must be'),
        (['{photo}', COCO, '--device', 'cuda'
          ], "Device 'cuda' is not available"),
    ])
def test_bad_model_options_are_one_line_messages(files, small_photo, args,
                                                 message):
    if args[-1] == 'cuda' and torch.cuda.is_available():
        args = args[:-1] + ['cuda:99']
        message = "Device 'cuda:99' is not available"
    args = [a.format(d=files, photo=small_photo) for a in args]
    assert_user_error(
        run_script('demo/demo.py', *args), message.format(d=files))


def test_out_dir_that_is_a_file(files, small_photo, weights):
    line = assert_user_error(
        run_script('demo/demo.py', small_photo, COCO, '--weights', weights,
                   *SMALL, '--out-dir', str(files / 'a_file')))
    assert line == (f'error: The output folder {files}/a_file is a file: '
                    'choose a folder (it is created if missing).')
    assert (files / 'a_file').read_text() == 'x'


def test_thin_image_is_a_message(files, weights, tmp_path):
    line = assert_user_error(
        run_script('demo/demo.py', str(files / 'thin.png'), COCO, '--weights',
                   weights, *SMALL, '--out-dir', str(tmp_path)))
    assert 'The image is 5000 x 1 pixels, too thin' in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    'content, message',
    [
        # Each kind is tested on read_class_file (tests/test_utils/
        # test_text_classifier.py); here, that the demo reports them.
        (b'# just a comment\n\n', 'lists no class'),
        ('caf\xe9\n'.encode('latin-1'), 'is not UTF-8 text'),
    ])
def test_bad_class_files(tmp_path, small_photo, weights, content, message):
    classes = tmp_path / 'classes.txt'
    classes.write_bytes(content)
    line = assert_user_error(
        run_script('demo/demo.py', small_photo, COCO, '--weights',
                   weights, '--classes', str(classes), '--out-dir',
                   str(tmp_path / 'out')))
    assert f'The class file {classes} ' in line and message in line
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('content, message', [
    (b'', 'is empty: make it again with `python tools/gen_cls.py CONFIG`'),
])
def test_bad_class_embedding_file(tmp_path, small_photo, weights, content,
                                  message):
    path = tmp_path / 'convnext_large_d_320_CocoPanopticOVDataset.pth'
    path.write_bytes(content)
    line = assert_user_error(
        run_script(
            'demo/demo.py',
            small_photo,
            COCO,
            '--weights',
            weights,
            *SMALL,
            '--out-dir',
            str(tmp_path / 'out'),
            env=dict(RAP_SAM_EMBD_DIR=str(tmp_path))))
    assert str(path) in line and message in line


def test_never_writes_over_the_input(tmp_path, small_photo, weights):
    photo = tmp_path / 'photo.png'
    photo.write_bytes(open(small_photo, 'rb').read())
    before = snapshot(tmp_path)
    for extra in ([], ['--overwrite']):
        line = assert_user_error(
            run_script('demo/demo.py', str(photo), COCO, '--weights', weights,
                       *SMALL, '--out-dir', str(tmp_path), *extra))
        assert line == (f'error: The result {tmp_path}/photo.png would '
                        f'replace the input {photo}: choose another output '
                        'folder.')
    assert snapshot(tmp_path) == before


def test_same_stem_inputs_and_earlier_results(tmp_path, small_photo, weights):
    """pic.jpg and pic.png get their own results; an earlier result is kept
    unless --overwrite; one bad image in the folder does not stop the rest.
    """
    folder, out = tmp_path / 'in', tmp_path / 'out'
    folder.mkdir()
    out.mkdir()
    img = cv2.imread(small_photo)
    cv2.imwrite(str(folder / 'pic.jpg'), img)
    cv2.imwrite(str(folder / 'pic.png'), img[:, ::-1])
    (folder / 'broken.jpg').write_bytes(b'not an image')
    cv2.imwrite(str(folder / 'thin.png'), np.zeros((1, 5000, 3), np.uint8))
    (out / 'pic_jpg.json').write_text('earlier')
    inputs = snapshot(folder)
    args = [
        str(folder), COCO, '--weights', weights, *SMALL, '--score-thr', '0.3',
        '--out-dir',
        str(out)
    ]

    line = assert_user_error(run_script('demo/demo.py', *args))
    assert line == (f'error: {out}/pic_jpg.json already exists: pass '
                    '--overwrite to replace earlier results, or choose '
                    'another output folder.')
    assert snapshot(out) == {out.relative_to(out) / 'pic_jpg.json': b'earlier'}
    # Said before the model loads: a checkpoint it would refuse is not
    # even read.
    missing = [
        str(tmp_path / 'missing.pth') if a == weights else a for a in args
    ]
    assert assert_user_error(run_script('demo/demo.py', *missing)) == line

    proc = run_script('demo/demo.py', *args, '--overwrite')
    assert_ran(proc)
    assert f'skipping {folder}/broken.jpg: Cannot read' in proc.stdout
    assert f'skipping {folder}/thin.png: The image is 5000 x 1' in proc.stdout
    assert '2 of 4 images segmented, 2 skipped' in proc.stdout
    assert sorted(os.listdir(out)) == [
        'pic_jpg.json', 'pic_jpg.png', 'pic_png.json', 'pic_png.png'
    ]
    for name, flipped in (('pic_jpg', False), ('pic_png', True)):
        info = json.loads((out / f'{name}.json').read_text())
        assert info['image'].endswith(name.replace('_', '.'))
        drawn = cv2.imread(str(out / f'{name}.png'))
        assert drawn.shape == img.shape
    assert snapshot(folder) == inputs


def test_video_failing_part_way_keeps_the_frames_done(tmp_path, small_photo,
                                                      weights):
    frames, out = tmp_path / 'clip', tmp_path / 'out'
    frames.mkdir()
    img = cv2.imread(small_photo)
    for t in range(3):
        cv2.imwrite(str(frames / f'{t:03d}.png'), img[:64, 8 * t:8 * t + 96])
    (frames / '003.png').write_bytes(b'a corrupt frame')
    cv2.imwrite(str(frames / '004.png'), img[:64, :96])
    proc = run_script('demo/video_demo.py', str(frames), YT19, '--weights',
                      weights, '--scale', '64', '48', '--chunk-frames', '1',
                      '--score-thr', '0', '--out-dir', str(out))
    # The frames' progress bar (tqdm: on stderr, each state after a '\r'),
    # then the one error line.
    *progress, last = proc.stderr.splitlines()
    assert all(p.startswith('frames: ') for p in progress if p), proc.stderr
    line = assert_user_error(
        subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout,
                                    last + '\n'))
    assert f'Cannot read {frames}/003.png as an image' in line
    # The frames segmented before the bad one, all three.
    done = re.search(
        r'Stopped: the (\d) frames? segmented before it are in '
        r'(\S+) and (\S+)\.$', line)
    assert done and done.group(2, 3) == (f'{out}/clip.mp4', f'{out}/clip.json')
    count = int(done.group(1))
    assert count == 3
    assert sorted(os.listdir(out)) == ['clip.json', 'clip.mp4']
    info = json.loads((out / 'clip.json').read_text())
    assert info['num_frames'] == count and info['complete'] is False
    assert info['error'].startswith(f'Cannot read {frames}/003.png')
    assert all(f['frame'] < count for t in info['tracks'] for f in t['frames'])
    cap = cv2.VideoCapture(str(out / 'clip.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == count
    cap.release()
    # Again with --overwrite: the earlier result stays (a finished one was
    # replaced by the part), the part goes beside it.
    earlier = {n: (out / n).read_bytes() for n in os.listdir(out)}
    proc = run_script('demo/video_demo.py', str(frames), YT19, '--weights',
                      weights, '--scale', '64', '48', '--chunk-frames', '1',
                      '--score-thr', '0', '--out-dir', str(out), '--overwrite')
    line = proc.stderr.splitlines()[-1]
    assert line.endswith(
        f'Stopped: the 3 frames segmented before it are in '
        f'{out}/clip.partial.mp4 and {out}/clip.partial.json (the earlier '
        'clip.* are kept).'), line
    assert {n: (out / n).read_bytes() for n in earlier} == earlier
    assert sorted(os.listdir(out)) == [
        'clip.json', 'clip.mp4', 'clip.partial.json', 'clip.partial.mp4'
    ]
    assert json.loads(
        (out / 'clip.partial.json').read_text())['num_frames'] == 3


@pytest.mark.parametrize('script, args', [
    ('demo/demo.py', ['{photo}', COCO]),
    ('demo/prompt_demo.py', ['{photo}', COCO, '--points', '10,10']),
    ('demo/video_demo.py', ['{video}', YT19]),
    ('demo/app.py', []),
])
def test_trust_checkpoint_loads_what_the_allow_list_refuses(
        tmp_path, small_photo, small_video, weights, script, args):
    """A checkpoint holding an object outside the allow-list is refused
    with a message recommending --trust-checkpoint, which every tool that
    loads weights takes."""
    import argparse
    ckpt = tmp_path / 'odd.pth'
    torch.save(
        dict(
            state_dict=torch.load(weights)['state_dict'],
            meta=dict(args=argparse.Namespace(lr=0.1))), ckpt)
    args = [a.format(photo=small_photo, video=small_video) for a in args]
    common = ['--weights', str(ckpt), '--device', 'cpu', *SMALL]
    if script != 'demo/app.py':
        common += ['--out-dir', str(tmp_path / 'out')]
    line = assert_user_error(run_script(script, *args, *common))
    assert 'argparse.Namespace' in line and '--trust-checkpoint' in line
    if script == 'demo/app.py':
        # Trusted, the app would start serving: the option is all to see.
        help_text = run_script(script, '--help').stdout
        assert '--trust-checkpoint' in help_text
        return
    proc = run_script(script, *args, *common, '--trust-checkpoint')
    assert_ran(proc)
    assert os.listdir(tmp_path / 'out')


def test_app_with_a_missing_checkpoint_does_not_start():
    assert_user_error(
        run_script('demo/app.py', '--weights', 'rapsam_r50_12e.pth'),
        'Checkpoint file not found: rapsam_r50_12e.pth')


def test_sigterm_mid_folder_keeps_finished_results_only(
        tmp_path, small_photo, weights):
    """``kill PID`` while demo.py works through a folder: it stops as on a
    Ctrl+C, one line and exit status 143 (128 + SIGTERM); the results
    already written stay whole, and no hidden temporary is left."""
    folder, out = tmp_path / 'in', tmp_path / 'out'
    folder.mkdir()
    img = cv2.imread(small_photo)
    for i in range(30):
        cv2.imwrite(str(folder / f'p{i:02d}.png'), img)
    proc = subprocess.Popen([
        sys.executable, 'demo/demo.py',
        str(folder), COCO, '--weights', weights, *SMALL, '--device', 'cpu',
        '--out-dir',
        str(out)
    ],
                            cwd=REPO,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 600
        while not (out / 'p00.json').exists():
            assert proc.poll() is None, proc.communicate()[1][-4000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr[-4000:]
    assert stderr.endswith('\nerror: terminated (SIGTERM).\n'), stderr[-4000:]
    assert stderr.count('error:') == 1 and 'Traceback' not in stderr
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.startswith('.')], names
    assert 2 <= len(names) < 60, names
    for name in names:
        if name.endswith('.json'):
            assert json.loads(
                (out /
                 name).read_text())['image'].endswith(name[:-len('.json')] +
                                                      '.png')
        else:
            assert cv2.imread(str(out / name)).shape == img.shape


@pytest.mark.parametrize('script, args', [
    ('demo/prompt_demo.py', ['--boxes', '-5,-1,10']),
    ('demo/video_demo.py', ['--points', '-5,10', '--boxes', '-5,-1,10']),
])
def test_values_starting_with_minus_are_values(small_photo, script, args):
    """Not argparse's "expected at least one argument": the value reaches
    its own check, which names it (before torch is imported)."""
    config = YT19 if 'video' in script else COCO
    assert_usage_error(
        run_script(script, small_photo, config, *args),
        "A box must be 4 comma-separated numbers, got '-5,-1,10'")


@pytest.mark.parametrize('script', ['demo/demo.py', 'demo/video_demo.py'])
def test_num_things_without_classes(small_photo, script, tmp_path):
    """Ignored before (the config's classes say which are things)."""
    config = YT19 if 'video' in script else COCO
    line = assert_user_error(
        run_script(script, small_photo, config, '--num-things', 3, '--out-dir',
                   tmp_path / 'out'))
    assert line == (
        'error: --num-things 3 goes with --classes FILE (the first N of its '
        "classes are things); without --classes the config's classes are "
        'used as they are: leave it out.')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('count', [3, -1])
def test_num_things_beyond_the_class_file(small_photo, tmp_path, count):
    """Named as the option, before the model loads (it was the API's
    'num_things must be between 0 and ...' once the model had loaded)."""
    classes = tmp_path / 'classes.txt'
    classes.write_text('cup,mug\n# a comment\nsaucer\n')
    line = assert_user_error(
        run_script('demo/demo.py', small_photo, COCO, '--classes', classes,
                   '--num-things', count, '--out-dir', tmp_path / 'out'))
    assert line == (f'error: --num-things must be from 0 to the 2 classes '
                    f'of {classes}, got {count}.')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('args, message', [
    (['--threads', '2'], '--threads 2 is for --backend onnxruntime or '
     'openvino; PyTorch takes its threads from OMP_NUM_THREADS '
     '(OMP_NUM_THREADS=2 python ...)'),
    (['--threads', '0', '--backend', 'onnxruntime'
      ], "argument --threads: expected a whole number >= 1, got '0'"),
])
def test_threads_the_backend_takes(small_photo, args, message, tmp_path):
    """--threads on torch was ignored without a word; 0 was the API's
    'num_threads must be >= 1' after torch had loaded."""
    assert_usage_error(
        run_script('demo/demo.py', small_photo, COCO, *args, '--out-dir',
                   tmp_path / 'out'), message)
    assert not (tmp_path / 'out').exists()


def test_a_chunk_too_large_for_the_memory_is_one_line(tmp_path, small_photo,
                                                      weights):
    """--chunk-frames the length of a long video was killed by the system
    for memory with no message; now refused before a frame is read (10**12
    frames of 64 x 48 pixels are no machine's memory)."""
    out = tmp_path / 'out'
    proc = run_script('demo/video_demo.py', small_photo, YT19, '--weights',
                      weights, '--scale', '64', '48', '--chunk-frames', 10**12,
                      '--out-dir', str(out))
    line = assert_user_error(proc)
    assert re.match(
        r'error: chunk_frames 1000000000000 would hold about [\d.]+ GB at '
        r'the 64x48 scale \(0 MB a frame\), more than the [\d.]+ GB '
        r'available: give at most \d+ \(longer videos', line), line
    assert not out.exists()
