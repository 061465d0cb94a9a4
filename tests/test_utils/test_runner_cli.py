"""What tools/train.py and tools/test.py refuse in --cfg-options before
building anything."""
import pytest
from mmengine.config import Config

from rap_sam.utils.runner_cli import check_option_keys
from rap_sam.utils.user_errors import UserError

CFG = Config(
    dict(
        optim_wrapper=dict(optimizer=dict(lr=0.1, weight_decay=0)),
        param_scheduler=[dict(milestones=[8, 11], gamma=0.1)],
        randomness=dict(seed=0, deterministic=False),
        test_evaluator=dict(type='Metric')))


@pytest.mark.parametrize('options, message', [
    ({
        'optim_wrapper.optimizer.lr': 'abc'
    }, "--cfg-options optim_wrapper.optimizer.lr=abc: the config has a "
     'number here (0.1): give a number.'),
    ({
        'param_scheduler.0.milestones': 16
    }, '--cfg-options param_scheduler.0.milestones=16: the config has a '
     'list here ([8, 11]): give a list, e.g. key=[a,b].'),
    ({
        'optim_wrapper.optimiser.lr': 0.2
    }, "--cfg-options optim_wrapper.optimiser.lr: the config has no "
     "'optim_wrapper.optimiser'"),
    ({
        'param_scheduler.3.gamma': 0.5
    }, "the config has no 'param_scheduler.3'"),
])
def test_refused(options, message):
    with pytest.raises(UserError) as info:
        check_option_keys(CFG, options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    'options',
    [
        {
            'optim_wrapper.optimizer.lr': 1  # an int for a float
        },
        {
            'optim_wrapper.optimizer.weight_decay': 1e-4
        },
        {
            'param_scheduler.0.milestones': [16]
        },
        {
            'randomness.seed': None  # mmengine then draws one
        },
        {
            'randomness.deterministic': True
        },
        {
            'optim_wrapper.optimizer.momentum': 0.9  # a new leaf key
        },
    ])
def test_accepted(options):
    check_option_keys(CFG, options)


def test_levels_skip_the_kind_of_deeper_keys():
    """An evaluator's keyword arguments the config leaves out, below the
    checked levels, are neither looked up nor checked."""
    check_option_keys(
        CFG, {'test_evaluator.reference_averaging.num_processes': 2}, levels=1)
    with pytest.raises(UserError, match='give a number'):
        check_option_keys(CFG, {'randomness.seed': 'abc'}, levels=1)
