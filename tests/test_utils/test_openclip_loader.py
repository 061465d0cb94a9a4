"""Reading OpenCLIP checkpoints: a tiny random OpenCLIP, no downloads."""
from pathlib import Path

import pytest
import torch
from helpers import TINY_CLIP_CFG as TINY
from helpers import tiny_clip_checkpoint
from safetensors.torch import save_file

from rap_sam.utils.openclip_loader import (ClipCheckpointError,
                                           build_clip_model,
                                           expected_clip_file,
                                           read_clip_state_dict)
from rap_sam.utils.user_errors import UserError

TINY_FILE = "(expected: a checkpoint of OpenCLIP 'tiny_clip')"


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    model, path = tiny_clip_checkpoint(tmp_path_factory.mktemp('clip'))
    return model, Path(path)


def _build(path):
    return build_clip_model('tiny_clip', TINY, str(path))


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_round_trip(tiny):
    model, path = tiny
    loaded = _build(path)
    _assert_same_weights(loaded, model)
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())


def test_wrapped_and_safetensors(tiny, tmp_path):
    model, _ = tiny
    state = model.state_dict()
    # What a training run writes: a 'state_dict' entry, DDP's prefix.
    wrapped = tmp_path / 'wrapped.pth'
    torch.save(
        dict(state_dict={
            f'module.{k}': v
            for k, v in state.items()
        }, epoch=3), wrapped)
    _assert_same_weights(_build(wrapped), model)
    hub = tmp_path / 'open_clip_model.safetensors'
    save_file({k: v.contiguous() for k, v in state.items()}, str(hub))
    _assert_same_weights(_build(hub), model)


def test_openclip_adaptations_kept(tiny, tmp_path):
    """A checkpoint with another text context length loads as OpenCLIP's
    load_checkpoint loads it: its position embeddings are resized."""
    model, _ = tiny
    short = dict(TINY, text_cfg=dict(TINY['text_cfg'], context_length=64))
    torch.manual_seed(1)
    other = build_clip_model('tiny_clip', short)
    path = tmp_path / 'short.pth'
    torch.save(other.state_dict(), path)
    loaded = _build(path)
    assert loaded.positional_embedding.shape == (77, 64)
    torch.testing.assert_close(loaded.positional_embedding[0],
                               other.positional_embedding[0])
    assert torch.equal(loaded.visual.trunk.stem[0].weight,
                       other.visual.trunk.stem[0].weight)


def test_truncated_and_damaged(tiny, tmp_path):
    _, path = tiny
    data = path.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(ClipCheckpointError) as exc:
        _build(cut)
    assert str(exc.value) == (
        f'{cut} is a truncated or damaged checkpoint (its zip archive is '
        f'cut short or corrupted); fetch the file again {TINY_FILE}')
    assert isinstance(exc.value, UserError)

    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(ClipCheckpointError) as exc:
        _build(empty)
    assert str(exc.value) == (
        f'{empty} is empty (0 bytes), not a checkpoint: the download or copy '
        f'was probably interrupted; fetch the file again {TINY_FILE}')

    page = tmp_path / 'page.bin'
    page.write_text('<!DOCTYPE html><html>Sign in</html>')
    with pytest.raises(ClipCheckpointError) as exc:
        _build(page)
    assert str(exc.value) == (
        f'{page} is not a PyTorch checkpoint: it is an HTML page (the '
        'download returned a web page): download the file itself '
        f'{TINY_FILE}')


def test_damaged_safetensors(tiny, tmp_path):
    model, _ = tiny
    hub = tmp_path / 'open_clip_model.safetensors'
    save_file({
        k: v.contiguous()
        for k, v in model.state_dict().items()
    }, str(hub))
    data = hub.read_bytes()
    hub.write_bytes(data[:len(data) // 2])
    with pytest.raises(ClipCheckpointError) as exc:
        _build(hub)
    msg = str(exc.value)
    assert msg.startswith(f'{hub} is a truncated or damaged checkpoint (')
    assert msg.endswith(f'); fetch the file again {TINY_FILE}')
    assert '\n' not in msg
    hub.write_bytes(b'')
    with pytest.raises(ClipCheckpointError, match=r'is empty \(0 bytes\)'):
        _build(hub)


def test_other_weights(tiny, tmp_path):
    model, _ = tiny
    state = model.state_dict()
    total = len(state)
    path = tmp_path / 'other.pth'
    fetch = "pass a checkpoint of OpenCLIP 'tiny_clip'"

    def refused(obj):
        torch.save(obj, path)
        with pytest.raises(ClipCheckpointError) as exc:
            _build(path)
        return str(exc.value)

    head = f"{path} is not an OpenCLIP 'tiny_clip' checkpoint"
    assert refused({'a': torch.zeros(1)
                    }) == (f'{head} ({total} of {total} keys missing, e.g. '
                           f'positional_embedding): {fetch}')
    partial = {k: v for k, v in state.items() if k != 'text_projection'}
    assert refused(partial) == (
        f'{head} (1 of {total} keys missing, e.g. text_projection): {fetch}')
    assert refused(dict(state, extra=torch.zeros(2))) == (
        f"{head} (1 of its {total + 1} keys are not the model's, e.g. "
        f'extra): {fetch}')
    assert refused(dict(state, logit_scale=2.0)) == (
        f'{head} (1 of {total} weights shaped otherwise, e.g. logit_scale '
        f'a float there, () here): {fetch}')
    femto = dict(
        TINY,
        vision_cfg=dict(TINY['vision_cfg'], timm_model_name='convnext_femto'))
    other = build_clip_model('femto', femto).state_dict()
    wrong = sum(other[k].shape != v.shape for k, v in state.items())
    assert wrong > 1
    assert refused(other) == (
        f'{head} ({wrong} of {total} weights shaped otherwise, e.g. '
        'visual.trunk.stem.0.weight (48, 3, 4, 4) there, (40, 3, 4, 4) '
        f'here): {fetch}')
    assert refused({}) == (f'{path} holds no weights, not the weights of an '
                           f'OpenCLIP model: {fetch}')
    assert refused([
        torch.zeros(1)
    ]) == (f'{path} holds a list, not the weights of an OpenCLIP model: '
           f'{fetch}')


def test_read_without_a_model_name(tmp_path):
    path = tmp_path / 'x.pth'
    path.write_bytes(b'PK\x03')
    with pytest.raises(ClipCheckpointError) as exc:
        read_clip_state_dict(str(path))
    assert str(exc.value) == (
        f'{path} is a truncated or damaged checkpoint (only 3 bytes); fetch '
        'the file again (expected: an OpenCLIP checkpoint)')


def test_expected_file_names_the_download():
    assert expected_clip_file(
        'convnext_large_d_320', 'laion2b_s29b_b131k_ft_soup') == (
            "the open_clip_pytorch_model.bin of OpenCLIP "
            "'convnext_large_d_320' 'laion2b_s29b_b131k_ft_soup' from "
            'https://huggingface.co/laion/'
            'CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup')
    assert expected_clip_file('tiny_clip',
                              None) == ("a checkpoint of OpenCLIP 'tiny_clip'")
