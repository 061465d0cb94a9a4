"""tools/gen_cls.py with a tiny random OpenCLIP (no downloads)."""
import datetime
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import TINY_CLIP_CFG as TINY
from helpers import (assert_ran, assert_user_error, load_tool, run_script,
                     tiny_clip_checkpoint)
from mmdet.registry import DATASETS
from mmengine.dataset import BaseDataset, RepeatDataset

from rap_sam.utils.class_embeddings import (ClassEmbeddingError,
                                            load_class_embeddings)
from rap_sam.utils.config_file import read_config
from rap_sam.utils.openclip_loader import (ClipWeightsNotFoundError,
                                           build_clip_model,
                                           build_clip_tokenizer)
from rap_sam.utils.text_classifier import (dataset_vocabulary,
                                           encode_class_names, encode_prompts,
                                           split_synonyms,
                                           vocabulary_embeddings,
                                           vocabulary_name)
from rap_sam.utils.vild_templates import VILD_TEMPLATES

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CLASSES = ('person,child,girl', 'dog', 'traffic_light/signal')


@DATASETS.register_module(force=True)
class TinyOVDataset(BaseDataset):
    METAINFO = dict(classes=CLASSES)


@DATASETS.register_module(force=True)
class TinyVersionedDataset(BaseDataset):
    METAINFO = dict(classes=('cat', 'zebra'))

    def __init__(self, dataset_version='2019', **kwargs):
        self.dataset_name = f'TinyVIS_{dataset_version}'
        super().__init__(**kwargs)


gen_cls = load_tool('tools/gen_cls.py')


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    model, path = tiny_clip_checkpoint(tmp_path_factory.mktemp('clip'))
    return model, build_clip_tokenizer('tiny_clip', TINY), path


@pytest.fixture
def env(tmp_path, monkeypatch):
    for var, sub in (('RAP_SAM_EMBD_DIR', 'embd'),
                     ('RAP_SAM_CLIP_DIR', 'clip'), ('HF_HUB_CACHE', 'hf')):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


def _config(tmp_path, num_classes=3, backbone=None, splits=('test', )):
    backbone = backbone or dict(
        type='OpenCLIPBackbone',
        model_name='tiny_clip',
        model_cfg=TINY,
        pretrained=None)
    datasets = dict(
        test="dict(type='TinyOVDataset', ann_file='absent.json', "
        "pipeline=[dict(type='LoadImageFromFile')])",
        train="dict(type='TinyVersionedDataset', ann_file='absent.json')")
    path = tmp_path / 'cfg.py'
    path.write_text(
        f'model = dict(backbone={backbone!r}, panoptic_head=dict('
        f'num_things_classes={num_classes - 1}, num_stuff_classes=1))\n' +
        ''.join(f'{split}_dataloader = dict(dataset={datasets[split]})\n'
                for split in splits))
    return str(path)


def _reference_embedding(model, tokenizer, synonym):
    feats = model.encode_text(
        tokenizer([t.format(synonym) for t in VILD_TEMPLATES]))
    feats = feats / feats.norm(dim=-1, keepdim=True)
    mean = feats.mean(0)
    return mean / mean.norm()


def test_split_synonyms():
    assert split_synonyms('traffic_light/signal') == [
        'traffic light', 'signal'
    ]
    assert split_synonyms('Person, child,,girl') == ['person', 'child', 'girl']
    assert split_synonyms('paper_or_cardboard') == ['paper', 'cardboard']
    with pytest.raises(ValueError):
        split_synonyms(' , ')


def test_truncated_prompts_match_encode_text(clip):
    model, tokenizer, _ = clip
    tokens = tokenizer([
        'a photo of a dog.', 'There is a large traffic '
        'light in the scene.'
    ])
    with torch.no_grad():
        torch.testing.assert_close(
            encode_prompts(model, tokens), model.encode_text(tokens))


def test_dataset_classifier(clip, env):
    model, tokenizer, ckpt = clip
    out = gen_cls.main([_config(env), '--checkpoint', ckpt])
    assert out == str(env / 'embd' / 'tiny_clip_TinyOVDataset.pth')
    emb = load_class_embeddings(
        'tiny_clip_TinyOVDataset', num_classes=3, embed_dims=32)
    assert emb.shape == (3, 3, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3, 3))
    # Class order and synonym order follow the dataset; padding repeats
    # the first synonym.
    with torch.no_grad():
        for cls, syns in enumerate(split_synonyms(c) for c in CLASSES):
            for j, syn in enumerate(syns):
                torch.testing.assert_close(
                    emb[cls, j],
                    _reference_embedding(model, tokenizer, syn),
                    atol=1e-5,
                    rtol=1e-5)
    assert torch.equal(emb[1, 1], emb[1, 0])
    assert torch.equal(emb[1, 2], emb[1, 0])
    assert torch.equal(emb[2, 2], emb[2, 0])
    assert not torch.equal(emb[0, 1], emb[0, 0])
    with pytest.raises(ClassEmbeddingError, match='dimension 32.*expects 768'):
        load_class_embeddings('tiny_clip_TinyOVDataset', embed_dims=768)


def test_same_weights_same_bytes(clip, env):
    _, _, ckpt = clip
    outs = [
        gen_cls.main([
            _config(env), '--checkpoint', ckpt, '--out',
            str(env / d / 'cls.pth')
        ]) for d in 'ab'
    ]
    with open(outs[0], 'rb') as a, open(outs[1], 'rb') as b:
        assert a.read() == b.read()


def test_an_out_file_written_meanwhile_stays(clip, env, monkeypatch):
    """--out was free when checked; another run wrote it while this one
    encoded: it is not replaced without --overwrite, and no temporary
    file is left beside it."""
    from rap_sam.utils.output_files import OutputError
    _, _, ckpt = clip
    out = env / 'cls.pth'
    encode = gen_cls.encode_class_names

    def other_run_finishes_first(*args, **kwargs):
        out.write_bytes(b'the other run')
        return encode(*args, **kwargs)

    monkeypatch.setattr(gen_cls, 'encode_class_names',
                        other_run_finishes_first)
    with pytest.raises(OutputError, match='appeared while this run was'):
        gen_cls.main([_config(env), '--checkpoint', ckpt, '--out', str(out)])
    assert out.read_bytes() == b'the other run'
    assert sorted(os.listdir(env)) == ['cfg.py', 'cls.pth']
    # With --overwrite it is replaced.
    assert gen_cls.main(
        [_config(env), '--checkpoint', ckpt, '--out',
         str(out), '--overwrite']) == str(out)
    assert torch.load(out).shape[0] == len(CLASSES)


def test_classes_file_and_vocabulary_cache(clip, env, monkeypatch):
    model, tokenizer, ckpt = clip
    vocab = env / 'vocab.txt'
    vocab.write_text('# my classes\ncat\nsofa,couch\n')
    out = gen_cls.main(
        [_config(env), '--checkpoint', ckpt, '--classes',
         str(vocab)])
    name = vocabulary_name(['cat', 'sofa,couch'], 'tiny_clip',
                           osp.abspath(ckpt))
    assert out == str(env / 'embd' / f'{name}.pth')
    emb = torch.load(out, weights_only=True)
    assert emb.shape == (2, 2, 32)
    torch.testing.assert_close(
        emb, encode_class_names(model, tokenizer, ['cat', 'sofa,couch']))
    # The content-addressed cache finds the file and builds nothing.
    import rap_sam.utils.openclip_loader as loader
    monkeypatch.setattr(loader, 'build_clip_model', None)
    assert vocabulary_embeddings(['cat', 'sofa,couch'],
                                 'tiny_clip',
                                 checkpoint=ckpt,
                                 model_cfg=TINY) == (name, out)
    assert vocabulary_name(['cat', 'sofa'], 'tiny_clip', ckpt) != name


def test_offline_error_names_the_file(env):
    backbone = dict(
        type='OpenCLIPBackbone',
        model_name='convnext_large_d_320',
        init_cfg=dict(
            type='clip_pretrain', checkpoint='laion2b_s29b_b131k_ft_soup'))
    with pytest.raises(ClipWeightsNotFoundError) as exc:
        gen_cls.main([_config(env, backbone=backbone)])
    msg = str(exc.value)
    for part in ('convnext_large_d_320', 'laion2b_s29b_b131k_ft_soup',
                 'open_clip_pytorch_model.bin', '--checkpoint',
                 'huggingface.co/laion/CLIP-convnext_large_d_320',
                 str(env / 'clip' / 'convnext_large_d_320' /
                     'laion2b_s29b_b131k_ft_soup')):
        assert part in msg
    with pytest.raises(
            ClipWeightsNotFoundError, match='not found: .*absent.pth'):
        gen_cls.main([_config(env), '--checkpoint', str(env / 'absent.pth')])


def test_head_class_count_mismatch_is_not_fatal(clip, env):
    # The file fits the dataset; a joint-space head is warned about.
    _, _, ckpt = clip
    gen_cls.main([
        _config(env, num_classes=5), '--checkpoint', ckpt, '--out',
        str(env / 'x.pth')
    ])
    assert torch.load(env / 'x.pth', weights_only=True).shape[0] == 3


def test_dataset_names():
    assert dataset_vocabulary(dict(type='TinyOVDataset', ann_file='a.json')) \
        == ('TinyOVDataset', list(CLASSES))
    wrapped = dict(
        type=RepeatDataset,
        times=3,
        dataset=dict(
            type='TinyVersionedDataset',
            dataset_version='2021',
            ann_file='a.json'))
    assert dataset_vocabulary(wrapped) == ('TinyVIS_2021', ['cat', 'zebra'])
    override = dict(type='TinyOVDataset', metainfo=dict(classes=('a', 'b')))
    assert dataset_vocabulary(override)[1] == ['a', 'b']
    # A config that does not build (here a bad data_prefix) is read off the
    # class.
    broken = dict(type='TinyOVDataset', data_prefix=dict(img=None))
    assert dataset_vocabulary(broken) == ('TinyOVDataset', list(CLASSES))


SHIPPED_CONFIGS = ('rap_sam_convl_12e_adaptor.py', 'eval_rap_sam_coco.py',
                   'eval_rap_sam_yt19.py', 'rap_sam_r50_12e_adaptor.py')


def _run_tool(args, tmp_path, cwd=ROOT):
    """The tool as its docs run it: ``PYTHONPATH='.' python tools/gen_cls.py
    ...`` from the repository root, with empty weight and output folders."""
    env = dict(
        os.environ,
        PYTHONPATH='.',
        HOME=str(tmp_path / 'home'),
        RAP_SAM_EMBD_DIR=str(tmp_path / 'embd'))
    for var in ('RAP_SAM_CLIP_DIR', 'HF_HUB_CACHE', 'HF_HOME'):
        env.pop(var, None)
    return subprocess.Popen([sys.executable, 'tools/gen_cls.py', *args],
                            cwd=cwd,
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)


def _finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_shipped_configs_without_weights_say_what_to_fetch(tmp_path):
    """The seed's command on every shipped config, with no CLIP weights on
    the machine: an ``error:`` naming the file, where it goes and
    ``--checkpoint``; exit 2; no traceback. (Started together: each spends
    its seconds importing.)"""
    procs = [
        _run_tool([f'configs/rap_sam/{name}'], tmp_path / name)
        for name in SHIPPED_CONFIGS
    ]
    expected = str(tmp_path / '{}' / 'home' / '.cache' / 'clip' /
                   'convnext_large_d_320' / 'laion2b_s29b_b131k_ft_soup' /
                   'open_clip_pytorch_model.bin')
    for name, proc in zip(SHIPPED_CONFIGS, procs):
        line = assert_user_error(
            _finish(proc), 'open_clip_pytorch_model.bin',
            expected.format(name), '--checkpoint PATH', 'RAP_SAM_CLIP_DIR')
        assert line.startswith('error: No weights for OpenCLIP'), line
        assert not os.path.exists(tmp_path / name / 'embd')


def test_tool_writes_the_classifier(clip, tmp_path):
    """The same command with a (tiny, seeded) OpenCLIP checkpoint writes the
    file, equal to the in-process result. (The vocabulary comes from a
    file: the tiny config's dataset is registered in this process only.)"""
    model, tokenizer, ckpt = clip
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('cat\nsofa,couch\n')
    out = tmp_path / 'cls.pth'
    proc = _run_tool([
        _config(tmp_path), '--checkpoint', ckpt, '--classes',
        str(vocab), '--out',
        str(out)
    ], tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    emb = torch.load(out, weights_only=True)
    assert emb.shape == (2, 2, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            emb, encode_class_names(model, tokenizer, ['cat', 'sofa,couch']))


@pytest.mark.parametrize(
    'args, message',
    [
        (['configs/rap_sam/absent.py'
          ], 'error: Config file not found: configs/rap_sam/absent.py'),
        ([
            'configs/rap_sam/eval_rap_sam_coco.py', '--checkpoint',
            'absent.bin'
        ], 'error: OpenCLIP checkpoint not found: absent.bin'),
        (['{tmp}/broken.py'], 'error: Cannot read the config {tmp}/broken.py: '
         "SyntaxError: '(' was never closed (<unknown>, line 1)"),
        # Replaced silently (CLIP weights given as --checkpoint included), or
        # failed after the weights loaded and the classes were encoded.
        ([
            'configs/rap_sam/eval_rap_sam_coco.py', '--out',
            '{tmp}/earlier.pth'
        ], 'error: --out {tmp}/earlier.pth exists: name another file, or pass '
         '--overwrite to replace it.'),
        ([
            'configs/rap_sam/eval_rap_sam_coco.py', '--checkpoint',
            '{tmp}/earlier.pth', '--out', '{tmp}/earlier.pth', '--overwrite'
        ], 'error: --out {tmp}/earlier.pth is one of the inputs: name another '
         'file for the class embeddings.'),
        (['configs/rap_sam/eval_rap_sam_coco.py', '--out', '{tmp}'
          ], 'error: --out {tmp} is a folder: name a .pth file.'),
        ([
            'configs/rap_sam/eval_rap_sam_coco.py', '--out',
            '{tmp}/earlier.pth/x'
        ], 'error: --out {tmp}/earlier.pth/x: {tmp}/earlier.pth is a file, '
         'not a folder.'),
    ])
def test_tool_input_errors(tmp_path, args, message):
    (tmp_path / 'broken.py').write_text('model = dict(\n')
    (tmp_path / 'earlier.pth').write_bytes(b'kept')
    args = [a.format(tmp=tmp_path) for a in args]
    message = message.format(tmp=tmp_path)
    assert assert_user_error(_finish(_run_tool(args, tmp_path))) == message
    assert (tmp_path / 'earlier.pth').read_bytes() == b'kept'


def test_split_defaults_to_test_else_train(clip, env):
    """--split: the test dataset where the config has one, else the
    training dataset (a training config's head reads its classes)."""
    _, _, ckpt = clip
    for sub in ('both', 'train'):
        (env / sub).mkdir()
    both = _config(env / 'both', splits=('train', 'test'))
    assert gen_cls.main([both, '--checkpoint', ckpt]) == str(
        env / 'embd' / 'tiny_clip_TinyOVDataset.pth')
    assert gen_cls.main([both, '--checkpoint', ckpt, '--split', 'train'
                         ]) == str(env / 'embd' / 'tiny_clip_TinyVIS_2019.pth')
    train_only = _config(env / 'train', splits=('train', ))
    out = gen_cls.main(
        [train_only, '--checkpoint', ckpt, '--out',
         str(env / 'train.pth')])
    assert torch.load(out, weights_only=True).shape == (2, 1, 32)
    with pytest.raises(gen_cls.GenClsConfigError) as exc:
        gen_cls.main([train_only, '--checkpoint', ckpt, '--split', 'test'])
    assert str(exc.value) == (
        f'{train_only} has no test_dataloader.dataset to take class names '
        'from: choose another --split or give --classes FILE.')


def _tool_env(tmp_path):
    """The README's ``PYTHONPATH='.'``, empty weight and output folders."""
    return dict(
        PYTHONPATH='.',
        HOME=tmp_path / 'home',
        RAP_SAM_EMBD_DIR=tmp_path / 'embd',
        RAP_SAM_CLIP_DIR=None,
        HF_HUB_CACHE=None,
        HF_HOME=None)


def _cfg_options(prefix, value):
    """``--cfg-options`` setting the nested dict ``value`` at ``prefix``."""
    if isinstance(value, dict):
        return [
            opt for key, sub in value.items()
            for opt in _cfg_options(f'{prefix}.{key}', sub)
        ]
    return [f'{prefix}={value}']


def test_seed_command_on_the_training_config(clip, tmp_path):
    """The seed's ``python tools/gen_cls.py
    configs/rap_sam/rap_sam_convl_12e_adaptor.py`` reads the training
    datasets' joint classes (the config has no test dataset) and writes the
    file its head loads. A tiny OpenCLIP stands in for ConvNeXt-L: same
    model name, so the same file name."""
    model, tokenizer, ckpt = clip
    config = 'configs/rap_sam/rap_sam_convl_12e_adaptor.py'
    stdout = assert_ran(
        run_script(
            'tools/gen_cls.py',
            config,
            '--checkpoint',
            ckpt,
            '--cfg-options',
            *_cfg_options('model.backbone.model_cfg', TINY),
            env=_tool_env(tmp_path)))
    cfg = read_config(config)
    head = cfg.model.panoptic_head
    name = head.ov_classifier_name
    assert name == ('convnext_large_d_320_Concat_CocoPanopticOVDataset_'
                    'YouTubeVISDataset_2019')
    assert ('class names of the train dataset Concat_CocoPanopticOVDataset_'
            'YouTubeVISDataset_2019') in stdout
    assert os.listdir(tmp_path / 'embd') == [f'{name}.pth']
    num_classes = head.num_things_classes + head.num_stuff_classes
    emb = load_class_embeddings(
        name, str(tmp_path / 'embd'), num_classes=num_classes, embed_dims=32)
    _, classes = dataset_vocabulary(cfg.train_dataloader.dataset)
    assert len(classes) == num_classes == 155
    with torch.no_grad():
        for cls in (0, num_classes - 1):
            torch.testing.assert_close(
                emb[cls, 0],
                _reference_embedding(model, tokenizer,
                                     split_synonyms(classes[cls])[0]),
                atol=1e-5,
                rtol=1e-5)


def test_no_class_names_is_said_before_the_weights(tmp_path):
    """A config without datasets says so, not that several GB of CLIP
    weights are missing."""
    backbone = dict(
        type='OpenCLIPBackbone',
        model_name='convnext_large_d_320',
        init_cfg=dict(
            type='clip_pretrain', checkpoint='laion2b_s29b_b131k_ft_soup'))
    config = _config(tmp_path, backbone=backbone, splits=())
    line = assert_user_error(
        run_script('tools/gen_cls.py', config, env=_tool_env(tmp_path)))
    assert line == (
        f'error: {config} has neither a test_dataloader.dataset nor a '
        'train_dataloader.dataset to take class names from: give --classes '
        'FILE or --split val.')


FEMTO = dict(
    TINY,
    vision_cfg=dict(TINY['vision_cfg'], timm_model_name='convnext_femto'))


@pytest.mark.parametrize('kind', ['truncated', 'other model', 'not clip'])
def test_bad_checkpoint_is_one_line(clip, tmp_path, kind):
    """A damaged or wrong CLIP checkpoint: one line naming it and what to
    pass, and nothing written."""
    model, _, ckpt = clip
    path = tmp_path / 'clip.pth'
    state = model.state_dict()
    head = f"error: {path} is not an OpenCLIP 'tiny_clip' checkpoint"
    fetch = "pass a checkpoint of OpenCLIP 'tiny_clip'"
    if kind == 'truncated':
        with open(ckpt, 'rb') as f:
            data = f.read()
        path.write_bytes(data[:len(data) // 2])
        expected = (f'error: {path} is a truncated or damaged checkpoint '
                    '(its zip archive is cut short or corrupted); fetch the '
                    "file again (expected: a checkpoint of OpenCLIP "
                    "'tiny_clip')")
    elif kind == 'other model':
        other = build_clip_model('femto', FEMTO).state_dict()
        torch.save(other, path)
        wrong = sum(other[k].shape != v.shape for k, v in state.items())
        expected = (f'{head} ({wrong} of {len(state)} weights shaped '
                    'otherwise, e.g. visual.trunk.stem.0.weight '
                    f'(48, 3, 4, 4) there, (40, 3, 4, 4) here): {fetch}')
    else:
        torch.save({'state_dict': {
            'backbone.conv.weight': torch.zeros(1)
        }}, path)
        expected = (f'{head} ({len(state)} of {len(state)} keys missing, '
                    f'e.g. positional_embedding): {fetch}')
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('cat\n')
    result = run_script(
        'tools/gen_cls.py',
        _config(tmp_path),
        '--checkpoint',
        path,
        '--classes',
        vocab,
        '--out',
        tmp_path / 'out' / 'cls.pth',
        env=_tool_env(tmp_path))
    assert assert_user_error(result) == expected
    assert not (tmp_path / 'out').exists()
    assert not (tmp_path / 'embd').exists()


def test_reported_command_with_a_truncated_checkpoint(clip, tmp_path):
    """The audit's command: the expected file is named with its source."""
    _, _, ckpt = clip
    with open(ckpt, 'rb') as f:
        data = f.read()
    cut = tmp_path / 'clip.pth'
    cut.write_bytes(data[:-100])
    out = tmp_path / 'x.pth'
    line = assert_user_error(
        run_script(
            'tools/gen_cls.py',
            'configs/rap_sam/rap_sam_r50_12e_adaptor.py',
            '--split',
            'train',
            '--checkpoint',
            cut,
            '--out',
            out,
            env=_tool_env(tmp_path)))
    assert line == (
        f'error: {cut} is a truncated or damaged checkpoint (its zip '
        'archive is cut short or corrupted); fetch the file again (expected: '
        "the open_clip_pytorch_model.bin of OpenCLIP 'convnext_large_d_320' "
        "'laion2b_s29b_b131k_ft_soup' from https://huggingface.co/laion/"
        'CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup)')
    assert not out.exists()


def test_unsafe_checkpoint_loads_with_trust_checkpoint(clip, tmp_path):
    """A CLIP checkpoint holding an object a weights-only load refuses:
    the error's advice (--trust-checkpoint) is an option of the tool, and
    with it the file loads and the classifier is written."""
    model, tokenizer, _ = clip
    path = tmp_path / 'clip_with_timing.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            elapsed=datetime.timedelta(seconds=3)), path)
    vocab = tmp_path / 'vocab.txt'
    vocab.write_text('cat\nsofa,couch\n')
    out = tmp_path / 'out' / 'cls.pth'
    args = [
        _config(tmp_path), '--checkpoint', path, '--classes', vocab, '--out',
        out
    ]
    refused = run_script('tools/gen_cls.py', *args, env=_tool_env(tmp_path))
    assert_user_error(refused, str(path), 'datetime.timedelta',
                      'pass --trust-checkpoint')
    assert not (tmp_path / 'out').exists()
    assert_ran(
        run_script(
            'tools/gen_cls.py',
            *args,
            '--trust-checkpoint',
            env=_tool_env(tmp_path)))
    with torch.no_grad():
        torch.testing.assert_close(
            torch.load(out, weights_only=True),
            encode_class_names(model, tokenizer, ['cat', 'sofa,couch']))


def test_a_misspelt_config_option_is_one_line(tmp_path):
    """A parent key the config lacks was added and changed nothing (the
    class names or CLIP model it meant to set were not those used)."""
    config = 'configs/rap_sam/rap_sam_convl_12e_adaptor.py'
    line = assert_user_error(
        _finish(
            _run_tool([
                config, '--cfg-options',
                'model.panoptic_hed.ov_classifier_name=x'
            ], tmp_path)))
    assert line == (
        'error: --cfg-options model.panoptic_hed.ov_classifier_name: the '
        f"config has no 'model.panoptic_hed'; check the spelling against "
        f'{config}.')
