"""The three command-line demos end to end on small inputs (in-process,
seeded weights, a small --scale), and their messages for bad input."""
import importlib
import json
import os.path as osp
import re
import subprocess

import cv2
import pytest
from helpers import assert_usage_error, assert_user_error, config_path

COCO = config_path('rap_sam/eval_rap_sam_coco.py')
YT19 = config_path('rap_sam/eval_rap_sam_yt19.py')


def run_main(script, args, capsys) -> subprocess.CompletedProcess:
    """A demo's ``main(args)`` in this process, ended as it would end the
    process (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        importlib.import_module(script).main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_image_demo_writes_png_and_json(weights, small_photo, tmp_path):
    import demo
    out = tmp_path / 'out'
    demo.main([
        small_photo, COCO, '--weights', weights, '--scale', '96', '64',
        '--out-dir',
        str(out), '--score-thr', '0.3'
    ])
    info = json.loads((out / 'coffee.json').read_text())
    assert (info['width'], info['height']) == (150, 100)
    assert info['segments'], 'the seeded model finds segments'
    seg = info['segments'][0]
    assert {'category', 'score', 'area', 'bbox', 'segmentation'} <= set(seg)
    assert cv2.imread(str(out / 'coffee.png')).shape == (100, 150, 3)


def test_image_demo_on_a_training_config(weights, small_photo, tmp_path):
    """A model trained with a recipe, drawn with that recipe's config (it
    has no test set: the demo ended in an AttributeError): the joint
    training classes, the default test scale."""
    import demo
    out = tmp_path / 'out'
    demo.main([
        small_photo,
        config_path('rap_sam/rap_sam_r50_12e_adaptor.py'), '--weights',
        weights, '--scale', '96', '64', '--out-dir',
        str(out), '--score-thr', '0.3'
    ])
    info = json.loads((out / 'coffee.json').read_text())
    assert (info['width'], info['height']) == (150, 100)
    assert info['segments'], 'the seeded model finds segments'
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.text_classifier import dataset_vocabulary
    _, joint = dataset_vocabulary(
        read_config(config_path(
            'rap_sam/rap_sam_r50_12e_adaptor.py')).train_dataloader.dataset)
    names = {c.split(',')[0].replace('_', ' ') for c in joint}
    assert {s['category'] for s in info['segments']} <= names


def test_image_demo_folder_skips_unreadable(weights, small_photo, tmp_path,
                                            capsys):
    import demo
    folder = tmp_path / 'images'
    folder.mkdir()
    (folder / 'a.png').write_bytes(open(small_photo, 'rb').read())
    (folder / 'broken.jpg').write_bytes(b'no image here')
    demo.main([
        str(folder), COCO, '--weights', weights, '--scale', '64', '64',
        '--out-dir',
        str(tmp_path / 'out')
    ])
    assert osp.isfile(tmp_path / 'out' / 'a.json')
    assert not osp.exists(tmp_path / 'out' / 'broken.json')
    assert 'skipping' in capsys.readouterr().out


def test_image_demo_leaves_no_empty_folder(weights, tmp_path, capsys):
    """A run whose only image fails writes nothing: the --out-dir it made
    (and the folder above it) are removed again."""
    (tmp_path / 'broken.jpg').write_bytes(b'no image here')
    line = assert_user_error(
        run_main('demo', [
            str(tmp_path / 'broken.jpg'), COCO, '--weights', weights,
            '--scale', '64', '64', '--out-dir',
            str(tmp_path / 'runs' / 'out')
        ], capsys))
    assert re.search('Cannot read .*broken.jpg as an image', line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ['broken.jpg']


def test_prompt_demo_writes_png_and_json(weights, small_photo, tmp_path):
    import prompt_demo
    out = tmp_path / 'out'
    prompt_demo.main([
        small_photo, COCO, '--weights', weights, '--scale', '96', '64',
        '--points', '40,30', '120,80', '--boxes', '10,20,140,90', '--out-dir',
        str(out)
    ])
    info = json.loads((out / 'coffee_prompts.json').read_text())
    kinds = [p['type'] for p in info['prompts']]
    assert kinds == ['point', 'point', 'box']
    assert info['prompts'][0]['xy'] == [40, 30]
    for p in info['prompts']:
        assert {'category', 'score', 'iou_score', 'area',
                'segmentation'} <= set(p)
        assert p['segmentation']['size'] == [100, 150]
    assert cv2.imread(str(out / 'coffee_prompts.png')).shape == (100, 150, 3)


def test_video_demo_writes_mp4_and_json(weights, small_video, tmp_path):
    import video_demo
    out = tmp_path / 'out'
    video_demo.main([
        small_video, YT19, '--weights', weights, '--scale', '64', '48',
        '--score-thr', '0', '--chunk-frames', '2', '--out-dir',
        str(out)
    ])
    info = json.loads((out / 'pan.json').read_text())
    assert info['num_frames'] == 4 and (info['width'], info['height']) == (96,
                                                                           64)
    assert info['tracks']
    for track in info['tracks']:
        assert {'id', 'category', 'frames'} <= set(track)
        assert all(0 <= f['frame'] < 4 for f in track['frames'])
    cap = cv2.VideoCapture(str(out / 'pan.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (64, 96, 3)


def test_video_demo_takes_a_folder_of_frames(weights, small_photo, tmp_path):
    import video_demo
    frames = tmp_path / 'frames'
    frames.mkdir()
    img = cv2.imread(small_photo)
    for t in range(3):
        cv2.imwrite(str(frames / f'{t:03d}.jpg'), img[:, 10 * t:10 * t + 96])
    video_demo.main([
        str(frames), YT19, '--weights', weights, '--scale', '64', '48',
        '--out-dir',
        str(tmp_path / 'out')
    ])
    info = json.loads((tmp_path / 'out' / 'frames.json').read_text())
    assert info['num_frames'] == 3 and info['fps'] == 10


@pytest.mark.parametrize(
    'script, args, message',
    [
        ('demo', ['{tmp}/missing.jpg'], 'No such image or folder'),
        ('prompt_demo', ['{photo}', '--points', '400,10'],
         r'The point \(400, 10\) is outside the image, which is 150 x 100'),
        # A value, not an option, although it starts with '-'.
        ('prompt_demo', ['{photo}', '--points', '-5,10'],
         r'The point \(-5, 10\) is outside the image, which is 150 x 100'),
        ('prompt_demo', ['{photo}'], 'No prompt'),
        ('prompt_demo', ['{tmp}/notes.txt', '--points', '1,1'
                         ], 'Cannot read .*notes.txt as an image'),
        ('video_demo', ['{tmp}/missing.mp4'], 'No such video or folder'),
        ('video_demo', ['{tmp}/empty.mp4'
                        ], 'Cannot open .*empty.mp4 as a video'),
        ('video_demo', ['{tmp}/notes.txt'], 'Cannot open .* as a video'),
    ])
def test_bad_input_is_a_message(weights, small_photo, tmp_path, capsys, script,
                                args, message):
    (tmp_path / 'empty.mp4').write_bytes(b'')
    (tmp_path / 'notes.txt').write_text('not media')
    args = [a.format(tmp=tmp_path, photo=small_photo) for a in args]
    config = YT19 if script == 'video_demo' else COCO
    line = assert_user_error(
        run_main(
            script, args[:1] + [
                config, '--weights', weights, '--scale', '64', '64',
                '--out-dir',
                str(tmp_path / 'out')
            ] + args[1:], capsys))
    assert re.search(message, line)


@pytest.mark.parametrize('fps', [0, -1.0, float('inf'), float('nan'), 1e9])
def test_video_writer_refuses_a_bad_frame_rate_before_any_frame(
        tmp_path, small_video, fps):
    """Callers other than the command line (the app) are checked too, before
    the model is asked for anything (``predictor`` is not used)."""
    video_demo = importlib.import_module('video_demo')
    from rap_sam.apis import InputError
    with pytest.raises(InputError) as info:
        video_demo.track_video_to_files(
            None, small_video, str(tmp_path / 'pan'), fps=fps)
    assert str(info.value) == ('The frame rate must be above 0 and at most '
                               f'1000, got {fps}.')
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('text, fps', [('1000', 1000.0), ('0.5', 0.5),
                                       ('25', 25.0)])
def test_fps_option_takes_rates_up_to_1000(text, fps):
    assert importlib.import_module('video_demo').frame_rate(text) == fps


def test_source_info_of_a_damaged_video_prints_nothing(tmp_path):
    """FFmpeg's own `moov atom not found` line stays off stderr (its log
    level is set once per process, so this runs in a fresh one)."""
    import sys

    from helpers import REPO
    damaged = tmp_path / 'damaged.mp4'
    damaged.write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(64))
    code = ('import sys; sys.path.insert(0, "demo"); import video_demo; '
            f'print(video_demo.source_info({str(damaged)!r}))')
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '(None, None)\n',
                                                           '')


def test_malformed_point_is_an_argparse_error(capsys):
    assert_usage_error(
        run_main('prompt_demo', ['x.jpg', COCO, '--points', '3,a'], capsys),
        "A point must be 2 comma-separated numbers, got '3,a'")


def test_full_disk_keeps_earlier_results_whole(weights, small_photo, tmp_path,
                                               capsys, monkeypatch):
    """A disk that fills up while the drawing is written (simulated: the
    write fails with ENOSPC after 64 KB) leaves the earlier result as it was
    and no partial file, and ends with a one-line message."""
    import errno
    import os

    from rap_sam.utils import output_files

    def full_disk(path, mode='r', *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        write = f.write

        def write_64k(data):
            write(data[:65536])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        f.write = write_64k
        return f

    out = tmp_path / 'out'
    out.mkdir()
    (out / 'coffee.png').write_bytes(b'earlier drawing')
    monkeypatch.setattr(output_files, 'open', full_disk, raising=False)
    assert assert_user_error(
        run_main('demo', [
            small_photo, COCO, '--weights', weights, '--scale', '64', '64',
            '--out-dir',
            str(out), '--overwrite'
        ], capsys)) == (
            f'error: Cannot write {out}/coffee.png: No space left on device; '
            'free some space or choose another output folder.')
    assert os.listdir(out) == ['coffee.png']
    assert (out / 'coffee.png').read_bytes() == b'earlier drawing'


def test_failed_video_commit_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Several writers (the app writes mp4 and webm): when the first
    commit fails, the others' temporary files are removed too."""
    video_demo = importlib.import_module('video_demo')
    from rap_sam.utils.output_files import OutputError

    class Writer:
        released = False

        def release(self):
            self.released = True

    opened = []
    for ext in ('mp4', 'webm'):
        tmp = tmp_path / f'.clip.{ext}.part'
        tmp.write_bytes(b'frames')
        opened.append((str(tmp_path / f'clip.{ext}'), str(tmp), Writer()))

    def refuse(tmp, path):
        raise OutputError(f'{path} appeared while this run was working')

    monkeypatch.setattr(video_demo, 'commit', refuse)
    with pytest.raises(OutputError, match='clip.mp4 appeared'):
        video_demo._finish_videos(opened, keep=True)
    assert all(w.released for _, _, w in opened)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
