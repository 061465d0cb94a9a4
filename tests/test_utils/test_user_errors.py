"""cli_errors: what every command-line tool prints when it stops early."""
import pytest

from rap_sam.utils.user_errors import UserError, cli_errors


def test_user_error_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        with cli_errors('never said for a refused input'):
            raise UserError('No such image: x.jpg')
    assert exit_.value.code == 2
    assert capsys.readouterr().err == 'error: No such image: x.jpg\n'


@pytest.mark.parametrize('note, line', [
    ('', 'error: interrupted (Ctrl+C).\n'),
    ('nothing was written', 'error: interrupted (Ctrl+C); nothing was '
     'written.\n'),
])
def test_ctrl_c_is_one_line_and_status_130(capsys, note, line):
    with pytest.raises(SystemExit) as exit_:
        with cli_errors(note):
            raise KeyboardInterrupt
    assert exit_.value.code == 130
    assert capsys.readouterr().err == line


def test_other_errors_pass_through():
    with pytest.raises(ZeroDivisionError):
        with cli_errors():
            1 / 0
