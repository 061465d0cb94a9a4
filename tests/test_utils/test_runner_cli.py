"""What tools/train.py and tools/test.py check in --cfg-options before
building anything, and how a failure they cause is named."""
import pytest
from mmengine.config import Config

from rap_sam.utils.runner_cli import (LoopStarted, check_option_keys,
                                      merge_model_options, unexpected_options)
from rap_sam.utils.user_errors import UserError

CFG = Config(
    dict(
        optim_wrapper=dict(optimizer=dict(lr=0.1, weight_decay=0)),
        param_scheduler=[dict(milestones=[8, 11], gamma=0.1)],
        randomness=dict(seed=0, deterministic=False),
        test_evaluator=dict(type='Metric')))


@pytest.mark.parametrize('options, message', [
    ({
        'optim_wrapper.optimiser.lr': 0.2
    }, "--cfg-options optim_wrapper.optimiser.lr: the config has no "
     "'optim_wrapper.optimiser'"),
    ({
        'param_scheduler.3.gamma': 0.5
    }, "the config has no 'param_scheduler.3'"),
])
def test_misspelt_parents_are_refused(options, message):
    with pytest.raises(UserError) as info:
        check_option_keys(CFG, options)
    assert message in str(info.value)


def test_kind_changes_are_returned():
    """A word or a list for a number, a number for a list: allowed (a word
    can be right: loss_scale=dynamic), and said."""
    changes = check_option_keys(
        CFG,
        {
            'optim_wrapper.optimizer.lr': 'abc',
            'param_scheduler.0.milestones': 16,
            'optim_wrapper.optimizer.weight_decay': [1],
            # the same kinds, a new leaf, None and bools: no change
            'param_scheduler.0.gamma': 1,
            'optim_wrapper.optimizer.momentum': 'x',
            'randomness.seed': None,
            'randomness.deterministic': 1,
        })
    assert changes == {
        'optim_wrapper.optimizer.lr': 'the config has a number here (0.1)',
        'param_scheduler.0.milestones':
        'the config has a list here ([8, 11]; a list is given as key=[a,b])',
        'optim_wrapper.optimizer.weight_decay':
        'the config has a number here (0)',
    }


def test_levels_skip_deeper_keys():
    """An evaluator's keyword arguments the config leaves out, below the
    checked levels, are neither looked up nor compared."""
    assert check_option_keys(
        CFG, {'test_evaluator.reference_averaging.num_processes': 2},
        levels=1) == {}
    assert check_option_keys(
        CFG, {'randomness.seed': 'abc'}, levels=1) == {
            'randomness.seed': 'the config has a number here (0)'
        }


def test_a_failure_with_a_kind_change_names_the_option():
    options = {'optim_wrapper.optimizer.lr': 'abc'}
    changes = check_option_keys(CFG, options)
    with pytest.raises(UserError) as info:
        with unexpected_options(options, changes):
            raise TypeError("can't multiply sequence by non-int of type "
                            "'float'")
    assert str(info.value) == (
        '--cfg-options optim_wrapper.optimizer.lr=abc: the config has a '
        'number here (0.1). Building the run failed with TypeError: can\'t '
        "multiply sequence by non-int of type 'float'")


def test_other_failures_pass():
    with pytest.raises(TypeError, match='not iterable'):
        with unexpected_options({'a.b': 1}, {}):
            raise TypeError("'int' object is not iterable")
    with pytest.raises(ValueError, match='bad'):
        with unexpected_options(None):
            raise ValueError('bad')
    # a user error raised in the body stays itself
    with pytest.raises(UserError, match='mine'):
        with unexpected_options({'a': 'x'}, {'a': 'the config has ...'}):
            raise UserError('mine')


def test_a_misspelt_last_key_is_named():
    with pytest.raises(UserError, match='check the spelling of its last key'):
        with unexpected_options({'train_cfg.max_epoch': 1}):
            raise TypeError("__init__() got an unexpected keyword argument "
                            "'max_epoch'")


def test_a_kind_change_is_named_only_while_the_run_is_built():
    """Runner.train builds the optimizer and schedulers before its loop
    starts (LoopStarted.before_train): a TypeError from then on, a training
    step's, is not the option's, however the option changed the kind."""
    options = {'optim_wrapper.optimizer.lr': 'abc'}
    changes = check_option_keys(CFG, options)
    loop = LoopStarted()
    with pytest.raises(UserError, match='Building the run failed'):
        with unexpected_options(options, changes, loop):
            raise TypeError('in the optimizer constructor')
    loop.before_train(runner=None)
    with pytest.raises(TypeError, match='in a training step'):
        with unexpected_options(options, changes, loop):
            raise TypeError('in a training step')
    # An evaluation alike: Runner.test builds its evaluator first.
    loop = LoopStarted()
    loop.before_test(runner=None)
    with pytest.raises(ValueError, match='in a metric'):
        with unexpected_options(options, changes, loop):
            raise ValueError('in a metric')


def test_a_misspelt_last_key_is_named_in_the_loop_too():
    """The checkpoint hook takes a misspelt keyword at its first save, in
    the loop; the error names the key itself, so it is said then too."""
    loop = LoopStarted()
    loop.before_train(runner=None)
    with pytest.raises(UserError, match='max_keep_ckpt=3'):
        with unexpected_options({'default_hooks.checkpoint.max_keep_ckpt': 3},
                                {}, loop):
            raise TypeError("save_checkpoint() got an unexpected keyword "
                            "argument 'max_keep_ckpt'")


def test_merge_model_options_checks_the_section_and_its_part():
    cfg = Config(dict(model=dict(neck=dict(dcn_impl='auto'))))
    with pytest.raises(UserError, match="the config has no 'model.nek'"):
        merge_model_options(cfg, {'model.nek.dcn_impl': 'torch'})
    assert 'nek' not in cfg.model
    # Deeper keys may be keyword arguments a config leaves out.
    merge_model_options(cfg, {
        'model.neck.dcn_impl': 'torch',
        'model.neck.extra_cfg.depth': 2
    })
    assert cfg.model.neck.dcn_impl == 'torch'
    assert cfg.model.neck.extra_cfg.depth == 2
    merge_model_options(cfg, None)  # no options: unchanged
    assert cfg.model.neck.dcn_impl == 'torch'
