"""Class lists: synonyms, and class files read or refused with a message
that names the file and what to do."""
import pytest

from rap_sam.utils.text_classifier import (VocabularyError, read_class_file,
                                           split_synonyms)
from rap_sam.utils.user_errors import UserError


def test_split_synonyms_as_the_released_classifiers():
    assert split_synonyms('traffic_light/signal') == [
        'traffic light', 'signal'
    ]
    assert split_synonyms('Cup, mug ,') == ['cup', 'mug']
    assert split_synonyms('person_or_child') == ['person', 'child']


def test_reads_a_class_file(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_bytes('\ufeff# my classes\ncoffee cup,mug\n\n  saucer  \n'
                     'café\n'.encode('utf-8'))
    assert read_class_file(str(path)) == ['coffee cup,mug', 'saucer', 'café']


@pytest.mark.parametrize(
    'data, message',
    [
        (b'', r'lists no class \(only blank lines or \'#\' comments\)'),
        (b'# a comment\n\n   \n#another\n', 'lists no class'),
        ('cup\ncafé\n'.encode('latin-1'),
         r'is not UTF-8 text \(byte 0xe9 on line 2\): save it as UTF-8'),
        (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR', 'is binary, not text'),
        (b'cup\n , / \n', r'line 2: The class name .* holds no name'),
        # Two equal classifiers tie: the later class was never predicted.
        (b'cat\n# pets\ndog\ncat\n', r"line 4: the class 'cat' is already on "
         r'line 1: list each class once'),
    ])
def test_bad_class_files_are_one_line_messages(tmp_path, data, message):
    path = tmp_path / 'classes.txt'
    path.write_bytes(data)
    with pytest.raises(VocabularyError, match=message) as err:
        read_class_file(str(path))
    assert isinstance(err.value, UserError)
    assert str(path) in str(err.value) and '\n' not in str(err.value)


def test_missing_or_folder_class_file(tmp_path):
    with pytest.raises(
            VocabularyError,
            match='Cannot read the class file .*nope.txt: No such'):
        read_class_file(str(tmp_path / 'nope.txt'))
    with pytest.raises(VocabularyError, match='Is a directory'):
        read_class_file(str(tmp_path))
