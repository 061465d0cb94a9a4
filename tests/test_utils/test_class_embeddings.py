"""Class-embedding files: where they are found and what is refused."""
import pytest
import torch
from helpers import load_config, random_class_embeddings
from mmdet.registry import MODELS

from rap_sam.utils.class_embeddings import (ClassEmbeddingError,
                                            class_embedding_path,
                                            load_class_embeddings)


def test_default_directory_is_the_references(monkeypatch):
    monkeypatch.delenv('RAP_SAM_EMBD_DIR', raising=False)
    monkeypatch.setenv('HOME', '/home/someone')
    assert class_embedding_path('convnext_large_d_320_CocoPanopticOVDataset') \
        == '/home/someone/.cache/embd/' \
        'convnext_large_d_320_CocoPanopticOVDataset.pth'


def test_directory_override(monkeypatch, tmp_path):
    monkeypatch.setenv('RAP_SAM_EMBD_DIR', str(tmp_path))
    assert class_embedding_path('x') == str(tmp_path / 'x.pth')
    assert class_embedding_path('x', root='/elsewhere') == '/elsewhere/x.pth'


def test_loads_a_good_file(tmp_path):
    emb = random_class_embeddings(5, num_synonyms=2, dim=16)
    torch.save(emb, tmp_path / 'ok.pth')
    assert torch.equal(
        load_class_embeddings(
            'ok', str(tmp_path), num_classes=5, embed_dims=16), emb)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ClassEmbeddingError) as err:
        load_class_embeddings('nope', str(tmp_path))
    assert str(tmp_path / 'nope.pth') in str(err.value)
    assert 'tools/gen_cls.py' in str(err.value)
    # The toy configs' come from the toy tool, not from the CLIP tower.
    with pytest.raises(
            ClassEmbeddingError,
            match='Make it with `python tools/toy_train_eval.py`'):
        load_class_embeddings('toy_CocoPanopticOVDataset', str(tmp_path))


@pytest.mark.parametrize('tensor,kwargs,message', [
    (random_class_embeddings(7, dim=16), dict(num_classes=5),
     'has 7 classes but the model expects 5 .*: make it again for this '
     'config with `python tools/gen_cls.py CONFIG`'),
    (random_class_embeddings(5, dim=32), dict(embed_dims=16),
     'dimension 32 but the model expects 16'),
    (torch.ones(5,
                16), {}, r'\[num_classes, num_synonyms, dim\], got \(5, 16\)'),
    (random_class_embeddings(5, dim=16) * 2, {}, 'L2-normalised'),
])
def test_wrong_files_name_both_numbers(tmp_path, tensor, kwargs, message):
    torch.save(tensor, tmp_path / 'bad.pth')
    with pytest.raises(ClassEmbeddingError, match=message):
        load_class_embeddings('bad', str(tmp_path), **kwargs)


def _truncated_file() -> bytes:
    import io
    buf = io.BytesIO()
    torch.save(random_class_embeddings(5, dim=16), buf)
    return buf.getvalue()[:300]


def _pickled_object() -> bytes:
    """A torch file holding an object outside the weights-only allow-list."""
    import argparse
    import io
    buf = io.BytesIO()
    torch.save(argparse.Namespace(classes=5), buf)
    return buf.getvalue()


@pytest.mark.parametrize('data, message', [
    (b'', r'is empty: make it again with `python tools/gen_cls.py CONFIG`'),
    (b'cup\nsaucer\n', 'is not a class-embedding file torch can read|'
     'holds objects other than a tensor'),
    (_truncated_file(), 'is not a class-embedding file torch can read'),
    (_pickled_object(), 'holds objects other than a tensor'),
])
def test_unreadable_files_name_the_file(tmp_path, data, message):
    (tmp_path / 'bad.pth').write_bytes(data)
    with pytest.raises(ClassEmbeddingError, match=message) as err:
        load_class_embeddings('bad', str(tmp_path))
    assert str(tmp_path / 'bad.pth') in str(err.value)
    assert '\n' not in str(err.value)
    assert 'weights_only=False' not in str(err.value)


@pytest.mark.parametrize('tensor, message', [
    (torch.ones(3, 1, 4, dtype=torch.int64), 'holds torch.int64 values'),
    (torch.ones(0, 1, 4), r'holds no embeddings \(shape \(0, 1, 4\)\)'),
    (torch.full((2, 1, 4), float('nan')), 'L2-normalised'),
])
def test_tensors_that_are_no_embeddings(tmp_path, tensor, message):
    torch.save(tensor, tmp_path / 'bad.pth')
    with pytest.raises(ClassEmbeddingError, match=message):
        load_class_embeddings('bad', str(tmp_path))


def test_messages_are_one_line(tmp_path):
    with pytest.raises(ClassEmbeddingError) as err:
        load_class_embeddings('nope', str(tmp_path))
    assert '\n' not in str(err.value)


def test_model_build_reports_a_wrong_class_count(tmp_path, monkeypatch):
    torch.save(random_class_embeddings(40), tmp_path / 'forty.pth')
    monkeypatch.setenv('RAP_SAM_EMBD_DIR', str(tmp_path))
    cfg = load_config('rap_sam/eval_rap_sam_coco.py')
    cfg.model.panoptic_head.ov_classifier_name = 'forty'
    with pytest.raises(
            Exception, match='has 40 classes but the model '
            'expects 133'):
        MODELS.build(cfg.model)
