"""rap_sam/utils/arg_types.py: the tools' argparse types, one definition
whether a tool runs the file by its path (before torch) or imports
rap_sam.utils.runner_cli."""
import argparse
import os
import os.path as osp
import runpy
import subprocess
import sys

import pytest
from helpers import REPO, assert_usage_error, load_tool, run_logging_imports

from rap_sam.utils import arg_types, runner_cli

PATH = osp.join(REPO, 'rap_sam', 'utils', 'arg_types.py')


def test_runner_cli_re_exports_the_same_functions():
    assert runner_cli.positive_int is arg_types.positive_int
    assert runner_cli.non_negative_int is arg_types.non_negative_int
    assert runner_cli.parse_runner_args is arg_types.parse_runner_args


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


# mmengine's config module (DictAction) is allowed: under a second.
HEAVY = {'torch', 'mmdet', 'mmcv', 'rap_sam', 'cv2'}


# The tools that used to import torch before parsing: each command line's
# usage error (split at spaces), and an option its --help shows.
@pytest.mark.parametrize('tool, args, message, option', [
    ('tools/train.py', '', 'the following arguments are required: config',
     '--resume [CHECKPOINT]'),
    ('tools/test.py', 'cfg.py', 'the following arguments are required: '
     'checkpoint', '--show-dir SHOW_DIR'),
    ('tools/gen_cls.py', 'cfg.py --split dev', "argument --split: invalid "
     "choice: 'dev'", '(default: the config backbone\'s, else '
     'convnext_large_d_320)'),
    ('tools/analysis/deploy_accuracy.py', 'cfg.py', 'the following '
     'arguments are required: --checkpoint', '--calibration '
     '{minmax,percentile}'),
])
def test_help_and_usage_error_import_no_heavy_module(tool, args, message,
                                                     option):
    result, imported = run_logging_imports(tool, '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ''
    assert option in ' '.join(result.stdout.split())
    assert not HEAVY & imported, sorted(HEAVY & imported)

    result, imported = run_logging_imports(tool, *args.split())
    assert_usage_error(result, message)
    assert not HEAVY & imported, sorted(HEAVY & imported)


@pytest.mark.parametrize('tool, example', [
    ('tools/train.py', 'train_dataloader.batch_size=4'),
    ('tools/test.py', 'test_dataloader.dataset.data_root=/data/coco/'),
])
def test_option_item_without_value_is_one_line_before_torch(tool, example):
    result, imported = run_logging_imports(tool, 'cfg.py', 'ckpt.pth',
                                           '--cfg-options', 'model.test_cfg')
    assert (result.returncode, result.stderr) == (
        2, f'error: --cfg-options takes key=value items, e.g. {example} '
        '(not enough values to unpack (expected 2, got 1)).\n')
    assert not HEAVY & imported, sorted(HEAVY & imported)


def test_parse_runner_args_options(monkeypatch):
    # Set first, so that the variable the tool sets is undone afterwards.
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('LOCAL_RANK')
    parser = argparse.ArgumentParser()
    args = arg_types.parse_runner_args(
        parser, ['--cfg-options', 'a.b=1', 'c=x,y', '--local-rank', '3'],
        'a.b=2')
    assert args.cfg_options == {'a.b': 1, 'c': ['x', 'y']}
    assert (args.launcher, args.local_rank) == ('none', 3)
    assert os.environ['LOCAL_RANK'] == '3'


def test_written_out_defaults_are_rap_sams():
    """What gen_cls and deploy_accuracy write out so as to parse before
    torch loads."""
    from rap_sam.deploy import accuracy, quantize
    from rap_sam.utils import openclip_loader
    gen_cls = load_tool('tools/gen_cls.py')
    assert gen_cls.DEFAULT_CLIP_MODEL == openclip_loader.DEFAULT_CLIP_MODEL
    assert (gen_cls.DEFAULT_CLIP_PRETRAINED ==
            openclip_loader.DEFAULT_CLIP_PRETRAINED)
    deploy_accuracy = load_tool('tools/analysis/deploy_accuracy.py')
    assert deploy_accuracy.DEFAULT_MODES == accuracy.DEFAULT_MODES
    assert deploy_accuracy.CALIBRATIONS == quantize.CALIBRATIONS
    assert deploy_accuracy.DEFAULT_CALIBRATION == quantize.DEFAULT_CALIBRATION
    assert deploy_accuracy.INT8_MODULES == quantize.INT8_MODULES


@pytest.mark.parametrize('what, text', [
    ((), 'load --weights even if it holds objects outside the safe '
     'allow-list (unpickling can run code: only for files from a source '
     'you trust)'),
    (('CHECKPOINT', ), 'load CHECKPOINT even if it holds objects outside '
     'the safe allow-list (unpickling can run code: only for files from a '
     'source you trust)'),
])
def test_add_trust_checkpoint(what, text):
    parser = argparse.ArgumentParser()
    arg_types.add_trust_checkpoint(parser, *what)
    action = parser._option_string_actions['--trust-checkpoint']
    assert action.help == text
    assert parser.parse_args([]).trust_checkpoint is False
    assert parser.parse_args(['--trust-checkpoint']).trust_checkpoint is True


def test_run_as_a_program_it_installs_the_guard():
    """The one line an entry point runs first: with ``run_name`` its
    ``__name__``, the guard is in place when that is ``'__main__'``."""
    code = f'''
import runpy, signal
before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
runpy.run_path({PATH!r}, run_name='some_tool')
assert (signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGINT)) == before
cli = runpy.run_path({PATH!r}, run_name='__main__')
print(sorted(getattr(signal.getsignal(s), 'rap_sam_interrupt_guard', False)
             for s in (signal.SIGINT, signal.SIGTERM)),
      callable(cli['add_trust_checkpoint']))
'''
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert (result.returncode, result.stdout,
            result.stderr) == (0, '[True, True] True\n', '')


# A tool as the project's are written: arg_types.py by its path, first.
TOOL = '''import os.path as osp, runpy, sys
runpy.run_path(osp.join(osp.dirname(osp.abspath(__file__)), 'rap_sam',
                        'utils', 'arg_types.py'), run_name=__name__)
print(sys.executable, sys.argv[1:])
'''


def _clone(tmp_path):
    """A clone with arg_types.py (and the guard it runs) and TOOL, without
    .venv."""
    (tmp_path / 'rap_sam' / 'utils').mkdir(parents=True)
    for name in ('arg_types.py', 'interrupt_guard.py'):
        with open(osp.join(osp.dirname(PATH), name)) as f:
            (tmp_path / 'rap_sam' / 'utils' / name).write_text(f.read())
    (tmp_path / 'tool.py').write_text(TOOL)
    return tmp_path


def _run_without_packages(*cmd, cwd=REPO):
    """``python -S``: no site-packages, so none of the project's."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.run([sys.executable, '-S', *cmd],
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)


@pytest.mark.skipif(
    not osp.isfile(osp.join(REPO, '.venv', 'bin', 'python')),
    reason="needs the project's .venv (make env), which make test builds")
def test_a_python_without_the_packages_starts_the_tool_over_in_venv():
    """``python tools/test.py ...`` as the reference writes it, with a
    Python that lacks torch: the tool runs in .venv, with its arguments."""
    proc = _run_without_packages('tools/test.py', '--help')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith('usage: test.py'), proc.stdout[:500]


def test_without_an_environment_the_line_says_make_env(tmp_path):
    clone = _clone(tmp_path)
    proc = _run_without_packages(str(clone / 'tool.py'), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f'error: this Python ({sys.executable}) lacks numpy, torch, '
        f'mmengine, mmdet, which rap_sam needs: run `make env` in {clone} '
        '(it builds .venv, which the tools then use), or install '
        'requirements.txt into this Python.\n')


def _venv_python(clone, command):
    """``.venv/bin/python`` as a script that runs ``command "$@"``."""
    (clone / '.venv' / 'bin').mkdir(parents=True)
    python = clone / '.venv' / 'bin' / 'python'
    python.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    python.chmod(0o755)
    return python


def test_an_environment_that_lacks_them_too_is_said_once(tmp_path):
    clone = _clone(tmp_path)
    python = _venv_python(clone, f'{sys.executable} -S')
    proc = _run_without_packages(str(clone / 'tool.py'), 'a', cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f'error: {python} lacks numpy, torch, mmengine, mmdet: the '
        f'environment is incomplete; run `make env` in {clone} again.\n')


def test_the_started_over_tool_keeps_its_arguments(tmp_path):
    clone = _clone(tmp_path)
    _venv_python(clone, sys.executable)
    proc = _run_without_packages(
        str(clone / 'tool.py'), 'a b', '--x=1', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f"{sys.executable} ['a b', '--x=1']\n"
