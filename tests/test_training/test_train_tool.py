"""tools/train.py as a user runs it: mistakes end with one line
``error: ...`` and exit status 2, never a traceback."""
import os.path as osp

import pytest
from helpers import assert_user_error, run_script

TOY = 'configs/rap_sam/toy_rap_sam_train.py'


@pytest.fixture(scope='module')
def notes(tmp_path_factory):
    """A text file named like a checkpoint."""
    path = tmp_path_factory.mktemp('ckpts') / 'notes.pth'
    path.write_text('not a checkpoint\n')
    return path


# One process each costs seconds of imports: one case per kind of mistake.
@pytest.mark.parametrize(
    'case, args, message',
    [
        ('missing config', ['no/such_config.py'],
         'error: Config file not found: no/such_config.py'),
        # --trust-checkpoint is accepted (argparse would stop at it)
        ('missing resume file', [
            TOY, '--trust-checkpoint', '--resume', 'no/such.pth'
        ], 'error: Checkpoint file not found: no/such.pth'),
        ('text resume file', [TOY, '--resume', '{notes}'],
         'error: {notes} is truncated or not a checkpoint'),
        ('option without =', [TOY, '--cfg-options', 'train_cfg.max_epochs'
                              ], 'error: --cfg-options takes key=value items'),
        ('misspelt option', [TOY, '--cfg-options', 'trian_cfg.max_epochs=2'],
         "error: --cfg-options trian_cfg.max_epochs: the config has no "
         "'trian_cfg'"),
    ])
def test_user_errors_are_one_line(case, args, message, notes, tmp_path):
    args = [a.format(notes=notes) for a in args]
    result = run_script(
        'tools/train.py', *args, '--work-dir', tmp_path / 'work', timeout=300)
    assert assert_user_error(result).startswith(message.format(notes=notes))
    # nothing was trained or written
    assert not osp.exists(tmp_path / 'work')
