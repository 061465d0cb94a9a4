"""Results written without losing data: atomic files, distinct names, no
input or earlier result written over, file-system failures as messages."""
import errno
import json
import multiprocessing
import os

import cv2
import numpy as np
import pytest

from rap_sam.utils import output_files
from rap_sam.utils.output_files import (OutputError, atomic_output,
                                        check_outputs, commit, make_out_dir,
                                        result_stems, temp_path, write_bytes,
                                        write_image, write_json)
from rap_sam.utils.user_errors import UserError


def _full_disk_open(after: int):
    """``open`` whose files take ``after`` bytes, then fail as a full disk
    does (a partial write, then ENOSPC)."""

    class Full:

        def __init__(self, f):
            self.f, self.left = f, after

        def write(self, data):
            if len(data) > self.left:
                self.f.write(data[:self.left])
                self.f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(data)
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    return lambda path, mode='r', *a, **k: Full(open(path, mode, *a, **k))


def test_write_json_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / 'r.json'
    write_json(str(path), dict(a=[1, 2]))
    assert json.loads(path.read_text()) == dict(a=[1, 2])
    assert os.listdir(tmp_path) == ['r.json']


def test_write_image_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (9, 7, 3), np.uint8)
    write_image(str(tmp_path / 'x.png'), img)
    assert np.array_equal(cv2.imread(str(tmp_path / 'x.png')), img)


def test_full_disk_keeps_the_earlier_file_and_leaves_nothing_partial(
        tmp_path, monkeypatch):
    path = tmp_path / 'demo.png'
    path.write_bytes(b'earlier result')
    monkeypatch.setattr(
        output_files, 'open', _full_disk_open(64 * 1024), raising=False)
    with pytest.raises(OutputError) as err:
        write_bytes(str(path), b'x' * 200_000)
    message = str(err.value)
    assert message == (f'Cannot write {path}: No space left on device; free '
                       'some space or choose another output folder.')
    assert isinstance(err.value, UserError) and '\n' not in message
    assert path.read_bytes() == b'earlier result'
    assert os.listdir(tmp_path) == ['demo.png']  # no truncated temp file


def test_full_disk_on_a_new_file_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(
        output_files, 'open', _full_disk_open(10), raising=False)
    with pytest.raises(OutputError, match='No space left on device'):
        write_json(str(tmp_path / 'new.json'), list(range(100)))
    assert os.listdir(tmp_path) == []


def test_an_error_while_writing_removes_the_temp_file(tmp_path):
    with pytest.raises(KeyError):
        with atomic_output(str(tmp_path / 'v.mp4')) as tmp:
            assert tmp.endswith('.mp4') and os.path.dirname(tmp) == str(
                tmp_path)
            with open(tmp, 'wb') as f:
                f.write(b'half')
            raise KeyError('stop')
    assert os.listdir(tmp_path) == []


def test_a_writer_that_wrote_nothing_is_an_error(tmp_path):
    # OpenCV's VideoWriter says nothing when it cannot write.
    with pytest.raises(OutputError, match='nothing was written'):
        with atomic_output(str(tmp_path / 'v.mp4')):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('code, advice', [
    (errno.EACCES, 'choose a folder you can write to'),
    (errno.EROFS, 'choose a folder on a writable file system'),
])
def test_unwritable_folder_is_a_message(tmp_path, monkeypatch, code, advice):

    def refuse(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(output_files, 'open', refuse, raising=False)
    with pytest.raises(OutputError) as err:
        make_out_dir(str(tmp_path))
    assert str(err.value) == (f'Cannot write {tmp_path}: '
                              f'{os.strerror(code)}; {advice}.')


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(OutputError, match='The output folder .*f is a file'):
        make_out_dir(str(tmp_path / 'f'))
    assert (tmp_path / 'f').read_text() == 'x'


def test_out_dir_is_created_and_left_clean(tmp_path):
    make_out_dir(str(tmp_path / 'a' / 'b'))
    assert os.listdir(tmp_path / 'a' / 'b') == []


def test_same_stem_inputs_get_distinct_names():
    stems = result_stems(
        ['d/pic.jpg', 'd/pic.png', 'd/other.jpg', 'e/pic_jpg.png'], 'out')
    assert stems == [
        'out/pic_jpg', 'out/pic_png', 'out/other', 'out/pic_jpg_2'
    ]
    assert result_stems(['d/a.jpg'], 'out', '_prompts') == ['out/a_prompts']
    assert result_stems(['clips/frames/'], 'o') == ['o/frames']


def test_never_writes_over_an_input_even_with_overwrite(tmp_path):
    photo = tmp_path / 'photo.png'
    photo.write_bytes(b'the user\'s photo')
    for overwrite in (False, True):
        with pytest.raises(OutputError) as err:
            check_outputs([str(tmp_path / 'photo.png')], [str(photo)],
                          overwrite)
        assert 'would replace the input' in str(err.value)
    assert photo.read_bytes() == b'the user\'s photo'


def test_earlier_results_need_overwrite(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'1')
    (tmp_path / 'a.json').write_bytes(b'2')
    outputs = [str(tmp_path / n) for n in ('a.png', 'a.json', 'b.png')]
    with pytest.raises(OutputError) as err:
        check_outputs(outputs, [], overwrite=False)
    assert str(err.value) == (
        f'{tmp_path}/a.png already exists (and 1 more): pass --overwrite to '
        'replace earlier results, or choose another output folder.')
    check_outputs(outputs, [], overwrite=True)
    check_outputs([str(tmp_path / 'c.png')], [], overwrite=False)


def test_a_file_the_user_named_is_advised_another_file(tmp_path):
    """One output is a tool's --out: "choose another output folder" did
    not fit a file the user named."""
    report = tmp_path / 'report.json'
    report.write_text('"earlier"')
    with pytest.raises(OutputError) as err:
        check_outputs([str(report)], [], overwrite=False)
    assert str(err.value) == (
        f'{report} already exists: pass --overwrite to replace it, or choose '
        'another output file.')
    with pytest.raises(OutputError) as err:
        check_outputs([str(report)], [str(report)], overwrite=True)
    assert str(err.value) == (
        f'The result {report} would replace the input {report}: choose '
        'another output file.')
    report.unlink()
    check_outputs([str(report)], [], overwrite=False)
    report.write_text('"another run\'s"')
    with pytest.raises(OutputError) as err:
        write_json(str(report), 'mine')
    assert str(err.value) == (
        f'{report} appeared while this run was working (another run writing '
        'to the same file?): choose another output file or pass --overwrite.')
    assert report.read_text() == '"another run\'s"'


def _appeared(path) -> str:
    return (f'{path} appeared while this run was working (another run '
            'writing to the same folder?): choose another output folder or '
            'pass --overwrite.')


def _pair(folder, stem):
    return [str(folder / f'{stem}.png'), str(folder / f'{stem}.json')]


def test_a_result_that_appeared_while_working_is_not_replaced(tmp_path):
    png, js = _pair(tmp_path, 'pic')
    check_outputs([png, js], [], overwrite=False)
    # Another run, checked at the same time, publishes first.
    (tmp_path / 'pic.png').write_bytes(b'the other run')
    with pytest.raises(OutputError) as err:
        write_image(png, np.zeros((4, 4, 3), np.uint8))
    assert str(err.value) == _appeared(png)
    assert isinstance(err.value, UserError)
    assert (tmp_path / 'pic.png').read_bytes() == b'the other run'
    assert os.listdir(tmp_path) == ['pic.png']  # no temp file left


def test_a_pair_is_never_mixed_and_earlier_pairs_stay(tmp_path):
    a_png, a_js = _pair(tmp_path, 'a')
    b_png, b_js = _pair(tmp_path, 'b')
    check_outputs([a_png, a_js, b_png, b_js], [], overwrite=False)
    write_bytes(a_png, b'mine a')
    write_json(a_js, 'mine a')
    write_bytes(b_png, b'mine b')
    (tmp_path / 'b.json').write_text('"theirs b"')
    with pytest.raises(OutputError) as err:
        write_json(b_js, 'mine b')
    assert str(err.value) == _appeared(b_js)
    # This run's b.png goes: b.png beside the other run's b.json would
    # mix two runs' results.
    assert sorted(os.listdir(tmp_path)) == ['a.json', 'a.png', 'b.json']
    assert (tmp_path / 'b.json').read_text() == '"theirs b"'
    assert (tmp_path / 'a.png').read_bytes() == b'mine a'
    assert json.loads((tmp_path / 'a.json').read_text()) == 'mine a'


def test_only_this_runs_own_file_is_removed(tmp_path):
    png, js = _pair(tmp_path, 'pic')
    check_outputs([png, js], [], overwrite=False)
    write_bytes(png, b'mine')
    # A run with --overwrite replaces both (its png, then its json comes
    # before ours).
    theirs = tmp_path / '.theirs'
    theirs.write_bytes(b'theirs')
    os.replace(theirs, png)
    (tmp_path / 'pic.json').write_text('"theirs"')
    with pytest.raises(OutputError, match='appeared while this run'):
        write_json(js, 'mine')
    assert (tmp_path / 'pic.png').read_bytes() == b'theirs'
    assert (tmp_path / 'pic.json').read_text() == '"theirs"'
    assert sorted(os.listdir(tmp_path)) == ['pic.json', 'pic.png']


def test_with_overwrite_a_result_that_appeared_is_replaced(tmp_path):
    png, js = _pair(tmp_path, 'pic')
    check_outputs([png, js], [], overwrite=False)
    check_outputs([png, js], [], overwrite=True)  # the next run says so
    (tmp_path / 'pic.png').write_bytes(b'the other run')
    write_bytes(png, b'mine')
    write_json(js, 'mine')
    assert (tmp_path / 'pic.png').read_bytes() == b'mine'
    assert sorted(os.listdir(tmp_path)) == ['pic.json', 'pic.png']


def test_a_run_may_replace_its_own_result(tmp_path):
    png, _ = _pair(tmp_path, 'pic')
    check_outputs([png], [], overwrite=False)
    write_bytes(png, b'first')
    write_bytes(png, b'second')
    assert (tmp_path / 'pic.png').read_bytes() == b'second'
    assert os.listdir(tmp_path) == ['pic.png']


def test_files_not_checked_are_replaced_as_before(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('"old"')
    write_json(str(path), 'new')
    assert json.loads(path.read_text()) == 'new'


def test_a_video_committed_by_hand_is_guarded_too(tmp_path):
    mp4, js = str(tmp_path / 'clip.mp4'), str(tmp_path / 'clip.json')
    check_outputs([mp4, js], [], overwrite=False)
    tmp = temp_path(mp4)
    with open(tmp, 'wb') as f:
        f.write(b'frames')
    (tmp_path / 'clip.mp4').write_bytes(b'the other run')
    with pytest.raises(OutputError, match='clip.mp4 appeared while'):
        commit(tmp, mp4)
    assert os.listdir(tmp_path) == ['clip.mp4']
    assert (tmp_path / 'clip.mp4').read_bytes() == b'the other run'


@pytest.mark.parametrize(
    'code', [errno.EPERM, errno.EOPNOTSUPP], ids=['EPERM', 'EOPNOTSUPP'])
def test_without_hard_links_the_name_is_reserved(tmp_path, monkeypatch, code):

    def no_links(src, dst, *args, **kwargs):
        raise OSError(code, os.strerror(code), src)

    monkeypatch.setattr(os, 'link', no_links)
    png, js = _pair(tmp_path, 'pic')
    check_outputs([png, js], [], overwrite=False)
    write_bytes(png, b'mine')
    assert (tmp_path / 'pic.png').read_bytes() == b'mine'
    (tmp_path / 'pic.json').write_text('"theirs"')
    with pytest.raises(OutputError) as err:
        write_json(js, 'mine')
    assert str(err.value) == _appeared(js)
    assert os.listdir(tmp_path) == ['pic.json']
    assert (tmp_path / 'pic.json').read_text() == '"theirs"'


def _race_run(folder, name, stems, barrier):
    """One run of the race test: check, wait for the other, write the
    pairs in ``stems``' order, stop at the first error (as demo.py does)."""
    outputs = [p for stem in sorted(stems) for p in _pair(folder, stem)]
    check_outputs(outputs, [], overwrite=False)
    barrier.wait(timeout=60)
    try:
        for stem in stems:
            png, js = _pair(folder, stem)
            write_bytes(png, name.encode())
            write_json(js, name)
    except OutputError as err:
        (folder.parent / f'{name}.err').write_text(str(err))
        raise SystemExit(2)


def test_two_processes_writing_to_one_folder(tmp_path):
    folder = tmp_path / 'out'
    folder.mkdir()
    stems = [f'pic{i:02d}' for i in range(40)]
    # fork: the children have the helpers loaded (no second torch import).
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(2)
    runs = [
        ctx.Process(target=_race_run, args=(folder, 'A', stems, barrier)),
        ctx.Process(
            target=_race_run, args=(folder, 'B', stems[::-1], barrier))
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    codes = [run.exitcode for run in runs]
    # Writing from both ends, they meet: the one that finds the other's
    # result fails with the message (both may), none replaces the other's.
    assert set(codes) <= {0, 2} and 2 in codes, codes
    for name, code in zip('AB', codes):
        err = tmp_path / f'{name}.err'
        assert err.exists() == (code == 2)
        if code == 2:
            assert 'appeared while this run was working' in err.read_text()
    assert sorted(os.listdir(folder)) == sorted(
        p.split('/')[-1] for stem in stems for p in _pair(folder, stem))
    for stem in stems:
        writer = (folder / f'{stem}.png').read_bytes().decode()
        assert json.loads((folder / f'{stem}.json').read_text()) == writer


def test_webm_writer_says_nothing_and_passes_other_stderr_on(tmp_path):
    """OpenCV's FFmpeg writer prints a codec-tag note for every VP80 webm
    (with fprintf: its log level does not reach it); the writer opens
    without it, the file is whole, and stderr written meanwhile by others
    is kept. In a fresh process: the note is printed once per process."""
    import subprocess
    import sys
    path = str(tmp_path / 'clip.webm')
    code = ('import sys, numpy as np\n'
            'from rap_sam.utils.output_files import open_video_writer\n'
            'sys.stderr.write("before\\n")\n'
            f'w = open_video_writer({path!r}, "VP80", 5, (96, 64))\n'
            'assert w.isOpened()\n'
            'for i in range(5):\n'
            '    w.write(np.full((64, 96, 3), 40 * i, np.uint8))\n'
            'w.release()\n'
            'sys.stderr.write("after\\n")\n')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == 'before\nafter\n'
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 5
    assert abs(int(frames[4].mean()) - 160) <= 3


def test_run_out_dir_removes_only_the_empty_folders_it_made(tmp_path):
    (tmp_path / 'kept').mkdir()
    with pytest.raises(RuntimeError):
        with output_files.run_out_dir(str(tmp_path / 'a' / 'b')):
            assert (tmp_path / 'a' / 'b').is_dir()
            raise RuntimeError('the first image failed')
    assert os.listdir(tmp_path) == ['kept']  # a and a/b made, both removed
    with output_files.run_out_dir(str(tmp_path / 'kept')):
        pass
    assert os.listdir(tmp_path) == ['kept']  # the user's own, empty: kept
    with output_files.run_out_dir(str(tmp_path / 'a' / 'b')) as out:
        (tmp_path / 'a' / 'b' / 'r.json').write_text('{}')
    assert out == str(tmp_path / 'a' / 'b')
    assert os.listdir(tmp_path / 'a' / 'b') == ['r.json']


def test_check_new_file_tries_the_folder(tmp_path):
    """A folder that cannot be written in was found at the end of the run
    (gen_cls after CLIP encoded, tools/test.py after the evaluation): os.access
    says yes to root for /sys, whose folders refuse new files."""
    from rap_sam.utils.output_files import check_new_file
    with pytest.raises(OutputError) as err:
        check_new_file('/sys/kernel/new/report.json', False, 'JSON')
    assert str(err.value) in (
        'Cannot write /sys/kernel: Permission denied; choose a folder you '
        'can write to.', 'Cannot write /sys/kernel: Operation not '
        'permitted; choose a folder you can write to.')
    # A writable folder: nothing left behind by the probe.
    check_new_file(str(tmp_path / 'new' / 'report.json'), False, 'JSON')
    assert os.listdir(tmp_path) == []


def test_check_new_file_keeps_a_file_written_meanwhile(tmp_path):
    """Checked free without overwrite, the name is published only while it
    is still free; with overwrite the result replaces what is there."""
    from rap_sam.utils.output_files import check_new_file, write_bytes
    out = tmp_path / 'report.json'
    check_new_file(str(out), False, 'JSON')
    out.write_bytes(b'the other run')
    with pytest.raises(OutputError, match='appeared while this run was'):
        write_bytes(str(out), b'mine')
    assert out.read_bytes() == b'the other run'
    assert os.listdir(tmp_path) == ['report.json']
    check_new_file(str(out), True, 'JSON')
    write_bytes(str(out), b'mine')
    assert out.read_bytes() == b'mine'
