"""rap_sam/utils/arg_types.py: the tools' argparse types, one definition
whether a tool runs the file by its path (before torch) or imports
rap_sam.utils.runner_cli."""
import argparse
import os.path as osp
import runpy

import pytest
from helpers import REPO, run_logging_imports

from rap_sam.utils import arg_types, runner_cli

PATH = osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py')


def test_runner_cli_re_exports_the_same_functions():
    assert runner_cli.positive_int is arg_types.positive_int
    assert runner_cli.non_negative_int is arg_types.non_negative_int


@pytest.mark.parametrize('name, text, value', [
    ('positive_int', '1', 1),
    ('positive_int', ' 12 ', 12),
    ('non_negative_int', '0', 0),
    ('non_negative_int', '7', 7),
])
def test_whole_numbers_taken(name, text, value):
    for types in (vars(arg_types), runpy.run_path(PATH)):
        assert types[name](text) == value


@pytest.mark.parametrize('name, text, message', [
    ('positive_int', '0', "expected a whole number >= 1, got '0'"),
    ('positive_int', '-3', "expected a whole number >= 1, got '-3'"),
    ('positive_int', '2.5', "expected a whole number >= 1, got '2.5'"),
    ('positive_int', 'many', "expected a whole number >= 1, got 'many'"),
    ('non_negative_int', '-1', "expected a whole number >= 0, got '-1'"),
    ('non_negative_int', '', "expected a whole number >= 0, got ''"),
])
def test_other_text_refused(name, text, message):
    for types in (vars(arg_types), runpy.run_path(PATH)):
        with pytest.raises(argparse.ArgumentTypeError) as info:
            types[name](text)
        assert str(info.value) == message


def test_runs_by_path_without_torch():
    """Run by its path, as the tools do before --help: only the standard
    library is imported."""
    result, imported = run_logging_imports('rap_sam/utils/arg_types.py')
    assert (result.returncode, result.stdout, result.stderr) == (0, '', '')
    assert not {'torch', 'mmengine', 'mmdet', 'rap_sam', 'numpy'} & imported
