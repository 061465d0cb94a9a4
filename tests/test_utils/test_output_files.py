"""Results written without losing data: atomic files, distinct names, no
input or earlier result written over, file-system failures as messages."""
import errno
import json
import os

import cv2
import numpy as np
import pytest

from rap_sam.utils import output_files
from rap_sam.utils.output_files import (OutputError, atomic_output,
                                        check_outputs, make_out_dir,
                                        result_stems, write_bytes, write_image,
                                        write_json)
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
