"""The data checks' errors: one line (the tools print ``error: <message>``
once per process) naming what is missing and what to do."""
import pytest

from rap_sam.datasets import (DatasetContentError, DatasetLayoutError,
                              SampleLoadError)
from rap_sam.datasets.coco_panoptic_ov import COCO_LAYOUT
from rap_sam.datasets.data_checks import (SampleContentError,
                                          check_annotation_file,
                                          check_files_exist, layout_line,
                                          missing_files_tolerated,
                                          sample_load_error)
from rap_sam.datasets.youtube_vis_ov import YTVIS_LAYOUT


def test_layout_line_lists_the_expected_files():
    assert layout_line(COCO_LAYOUT) == (
        'val2017/*.jpg, train2017/*.jpg, annotations/panoptic_val2017.json, '
        'annotations/panoptic_val2017/*.png (RGB-encoded segment ids), '
        'annotations/panoptic_train2017.json, .../panoptic_train2017/*.png')
    assert layout_line(YTVIS_LAYOUT) == (
        'train/JPEGImages/<video>/<frame>.jpg, '
        'valid/JPEGImages/<video>/<frame>.jpg, train.json, valid.json '
        '(official YouTube-VIS 2019 files), or '
        'annotations/youtube_vis_2019_{train,valid}.json (mmdet-converted)')


def test_missing_data_root_is_one_line(tmp_path):
    root = f'{tmp_path}/coco/'
    with pytest.raises(DatasetLayoutError) as err:
        check_annotation_file(root + 'annotations/panoptic_val2017.json', root,
                              COCO_LAYOUT)
    assert str(err.value) == (
        f"Data root '{root}' does not exist (it should hold "
        f'{layout_line(COCO_LAYOUT)}); link your copy there (ln -s '
        f'/path/to/coco {tmp_path}/coco) or point the dataset\'s data_root '
        'at it with --cfg-options (tools/test.py: '
        'test_dataloader.dataset.data_root=DIR/; tools/train.py: the '
        "data_root of each dataset under the recipe's "
        'train_dataloader.dataset; see data/README.md)')


def test_missing_annotation_file_is_one_line(tmp_path):
    ann = f'{tmp_path}/valid.json'
    with pytest.raises(DatasetLayoutError) as err:
        check_annotation_file(ann, str(tmp_path), YTVIS_LAYOUT)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(f"Annotation file '{ann}' not found. "
                              'Expected layout: train/JPEGImages/')
    assert message.endswith('; check data_root and ann_file '
                            '(see data/README.md)')


def test_present_files_pass(tmp_path):
    (tmp_path / 'a.json').write_text('{}')
    (tmp_path / 'x.jpg').write_bytes(b'x')
    check_annotation_file(f'{tmp_path}/a.json', str(tmp_path), COCO_LAYOUT)
    check_files_exist([f'{tmp_path}/x.jpg', 's3://bucket/y.jpg'], 'images',
                      'a.json', COCO_LAYOUT)


@pytest.mark.parametrize('tolerance', [None, 0.25])
def test_missing_listed_files_are_one_line(tmp_path, tolerance):
    paths = [f'{tmp_path}/{i}.jpg' for i in range(4)]
    (tmp_path / '0.jpg').write_bytes(b'x')
    with pytest.raises(DatasetLayoutError) as err:
        if tolerance is None:
            check_files_exist(paths, 'images', 'ann.json', COCO_LAYOUT)
        else:
            with missing_files_tolerated(tolerance):
                check_files_exist(paths, 'images', 'ann.json', COCO_LAYOUT)
    message = str(err.value)
    assert '\n' not in message
    limit = ('' if tolerance is None else
             ' (training skips samples with missing files while they are '
             'at most 25% of them)')
    assert message == (
        "3 of 4 images listed in 'ann.json' are missing, e.g. " +
        ', '.join(f"'{p}'" for p in paths[1:]) + limit +
        f'. Expected layout: {layout_line(COCO_LAYOUT)}; check the '
        "dataset's data_root and data_prefix (see data/README.md)")


def test_a_sample_error_naming_its_file_keeps_its_problems():
    """A pipeline error that names the bad file (a panoptic PNG without its
    segments) keeps its type and problems through the dataset's wrapping:
    training counts and skips the sample, the tools print one line."""
    problem = "'a.png' holds none of the 2 segment ids listed for it"
    err = SampleContentError(f'Panoptic PNG {problem}.', [problem])
    wrapped = sample_load_error('Coco', 7, ['a.jpg', 'a.png'], err)
    assert type(wrapped) is SampleContentError
    assert isinstance(wrapped, SampleLoadError)  # skipped in training
    assert isinstance(wrapped, DatasetContentError)  # a UserError
    assert str(wrapped) == f'Coco: sample 7: Panoptic PNG {problem}.'
    assert wrapped.problems == [problem]
