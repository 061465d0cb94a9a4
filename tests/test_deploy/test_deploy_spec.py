"""deploy.json: the validator's one-line messages, write/read round trip,
the graph check on small ONNX files, and no torch import."""
import copy
import hashlib
import json
import os
import subprocess
import sys

import onnx
import pytest
from helpers import REPO
from onnx import TensorProto, helper

from rap_sam.deploy.deploy_spec import (SPEC_FILE, DeployFolderError,
                                        DeploySpec, make_work_folder,
                                        output_folder_problem,
                                        read_deploy_spec, replace_folder,
                                        validate_spec, write_spec)

FEATURE = [1, 2, 2, 8]


def io(**tensors):
    return {
        name: dict(shape=shape, dtype=dtype)
        for name, (shape, dtype) in tensors.items()
    }


def graph_entries():
    """The three graphs' inputs and outputs as an export of a 64 x 64 input
    writes them (8 classes, 4 queries, prompts free)."""
    feature = io(basis=(FEATURE, 'float32'))
    return dict(
        image_encoder=dict(
            file='image_encoder.onnx',
            inputs=io(image=([1, 3, 64, 64], 'float32')),
            outputs=feature),
        panoptic_decoder=dict(
            file='panoptic_decoder.onnx',
            inputs=feature,
            outputs=io(
                cls_logits=([1, 4, 9], 'float32'),
                mask_logits=([1, 4, 16, 16], 'float32'))),
        prompt_decoder=dict(
            file='prompt_decoder.onnx',
            inputs=dict(
                feature,
                **io(boxes=(['N', 4], 'float32'), img_shape=([2], 'int64'))),
            outputs=io(
                cls_logits=([1, 'N', 9], 'float32'),
                mask_logits=([1, 'N', 16, 16], 'float32'),
                iou=([1, 'N', 1], 'float32'))))


def make_spec():
    return dict(
        format_version=1,
        config='toy_eval_coco.py',
        precision='fp32',
        opset=17,
        dynamic=False,
        low_rank=True,
        preprocess=dict(
            scale=[64, 64],
            keep_ratio=True,
            pad_shape=[64, 64],
            size_divisor=32,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_value=0.0),
        classes=[f'class_{i}' for i in range(8)],
        num_things=5,
        test_cfg=dict(object_mask_thr=0.8, iou_thr=0.8),
        graphs=graph_entries())


_TYPES = {'float32': TensorProto.FLOAT, 'int64': TensorProto.INT64}


def onnx_graph(entry):
    """A small ONNX model with the entry's inputs and outputs (each output
    made from the first input by Shape / Cast / Expand, so the file is
    valid; only its interface matters here)."""
    inputs = [
        helper.make_tensor_value_info(n, _TYPES[i['dtype']], i['shape'])
        for n, i in entry['inputs'].items()
    ]
    outputs = [
        helper.make_tensor_value_info(n, _TYPES[o['dtype']], o['shape'])
        for n, o in entry['outputs'].items()
    ]
    first = inputs[0].name
    nodes = [
        helper.make_node('ReduceSum', [first], ['total'], keepdims=0),
        helper.make_node('Cast', ['total'], ['scalar'], to=TensorProto.FLOAT)
    ]
    for i, out in enumerate(outputs):
        shape = [
            d if isinstance(d, int) else 1
            for d in entry['outputs'][out.name]['shape']
        ]
        nodes += [
            helper.make_node(
                'Constant', [], [f'shape{i}'],
                value=helper.make_tensor(f'shape{i}_v', TensorProto.INT64,
                                         [len(shape)], shape)),
            helper.make_node('Expand', ['scalar', f'shape{i}'], [out.name])
        ]
    graph = helper.make_graph(nodes, 'g', inputs, outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def folder(tmp_path):
    spec = make_spec()
    for entry in spec['graphs'].values():
        onnx.save(onnx_graph(entry), str(tmp_path / entry['file']))
    write_spec(str(tmp_path), spec)
    return tmp_path


def test_write_read_round_trip(folder):
    spec = read_deploy_spec(str(folder))
    expected = make_spec()
    for entry in expected['graphs'].values():  # each graph file's digest
        entry['sha256'] = hashlib.sha256(
            (folder / entry['file']).read_bytes()).hexdigest()
    with open(folder / SPEC_FILE) as f:
        assert json.load(f) == expected == spec.data
    assert spec.precision == 'fp32'
    assert spec.graph_files == {
        n: f'{n}.onnx'
        for n in ('image_encoder', 'panoptic_decoder', 'prompt_decoder')
    }
    assert spec.feature_names == ['basis']
    assert spec.input_names('prompt_decoder') == [
        'basis', 'boxes', 'img_shape'
    ]
    assert spec.output_names('prompt_decoder') == [
        'cls_logits', 'mask_logits', 'iou'
    ]
    assert spec.img_shape_dtype == 'int64'
    assert spec.pad_shape == [64, 64]
    int8 = spec.with_precision('int8', ['image_encoder'], calibration=4)
    assert spec.precision == 'fp32'  # a copy
    int8.write(str(folder))
    again = read_deploy_spec(str(folder))
    assert again.precision == 'int8'
    assert again['quantized_graphs'] == ['image_encoder']
    assert again['calibration_images'] == 4
    assert not os.path.exists(folder / (SPEC_FILE + '.tmp'))


def _set(path, value):

    def change(spec):
        *keys, last = path.split('.')
        target = spec
        for key in keys:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


# A broken spec: (change, words of the message).
BROKEN = {
    'format version':
    (_set('format_version',
          2), 'format_version 2; this version of rap_sam reads 1'),
    'missing key': (_set('classes', KeyError), 'has no "classes"'),
    'bool as int': (_set('opset', True), '"opset" must be int, got True'),
    'precision': (_set('precision', 'fp16'), 'precision must be one of'),
    'old opset': (_set('opset', 13), 'opset 13 is below 17'),
    'preprocess key': (_set('preprocess.mean',
                            KeyError), '"preprocess" has no "mean"'),
    'zero std':
    (_set('preprocess.std',
          [1.0, 0.0, 1.0]), '"preprocess.std" must be 3 numbers > 0'),
    'scale': (_set('preprocess.scale',
                   [64]), '"preprocess.scale" must be 2 numbers'),
    'no classes': (_set('classes', []), '"classes" must be a non-empty'),
    'num_things': (_set('num_things', 9), '"num_things" must be between 0 '
                   'and the number of classes (8), got 9'),
    # Edited lists: run, they labelled segments wrongly (longer) or
    # indexed past the names (shorter).
    'more classes': (_set('classes', [f'c{i}' for i in range(9)]),
                     '"classes" lists 9 classes, the panoptic_decoder '
                     'scores 8 (and "no object")'),
    # Each ran to a runtime error or a TypeError at the first image.
    'pad shape': (_set('preprocess.pad_shape', [64, 96]),
                  '"preprocess.pad_shape" is [64, 96], the image encoder '
                  'takes [64, 64]'),
    'threshold a string': (_set('test_cfg.object_mask_thr', 'high'),
                           '"test_cfg.object_mask_thr" must be a number, '
                           "got 'high'"),
    'fewer classes':
    (lambda spec: spec.update(classes=['a', 'b'], num_things=1),
     '"classes" lists 2 classes, the panoptic_decoder scores 8'),
    'graph missing': (_set('graphs.prompt_decoder',
                           KeyError), '"graphs" has no "prompt_decoder"'),
    'file outside': (_set('graphs.image_encoder.file', '../x.onnx'),
                     'must be a file name in the export folder'),
    'bad shape': (_set('graphs.image_encoder.inputs.image.shape',
                       [1, -3]), 'must be a list of sizes'),
    'no outputs': (_set('graphs.panoptic_decoder.outputs', {}),
                   '"graphs.panoptic_decoder.outputs" must map names'),
}


@pytest.mark.parametrize('case', list(BROKEN))
def test_validator_names_the_problem(case):
    change, words = BROKEN[case]
    spec = make_spec()
    change(spec)
    with pytest.raises(DeployFolderError) as err:
        validate_spec(spec, 'some/deploy.json')
    message = str(err.value)
    assert message.startswith('some/deploy.json')
    assert words in message and '\n' not in message
    with pytest.raises(DeployFolderError):
        DeploySpec(spec)


def test_writer_refuses_a_broken_spec(tmp_path):
    spec = make_spec()
    spec['num_things'] = -1
    with pytest.raises(DeployFolderError, match='num_things'):
        write_spec(str(tmp_path), spec)
    assert os.listdir(tmp_path) == []


def test_reader_names_the_file(folder, tmp_path):
    missing = tmp_path / 'nothing'
    with pytest.raises(DeployFolderError, match='Export folder not found'):
        read_deploy_spec(str(missing))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(
            DeployFolderError, match=f'{empty}/deploy.json not found'):
        read_deploy_spec(str(empty))
    spec_file = folder / SPEC_FILE
    good = spec_file.read_text()
    spec_file.write_text(good[:-20])
    with pytest.raises(DeployFolderError, match='deploy.json is not valid'):
        read_deploy_spec(str(folder))
    spec_file.write_text(good)
    os.remove(folder / 'panoptic_decoder.onnx')
    for check in (True, False):  # a missing file is found either way
        with pytest.raises(
                DeployFolderError, match='panoptic_decoder.onnx not found'):
            read_deploy_spec(str(folder), check_graphs=check)


def _write_graph(folder, name, entry):
    onnx.save(onnx_graph(entry), str(folder / f'{name}.onnx'))


def test_graph_that_disagrees_is_named(folder):
    entries = graph_entries()
    # Another export's encoder (another input shape).
    entry = copy.deepcopy(entries['image_encoder'])
    entry['inputs']['image']['shape'] = [1, 3, 96, 64]
    _write_graph(folder, 'image_encoder', entry)
    with pytest.raises(DeployFolderError) as err:
        read_deploy_spec(str(folder))
    assert 'image_encoder.onnx: input "image" has shape [1, 3, 96, 64]' in \
        str(err.value)
    read_deploy_spec(str(folder), check_graphs=False)  # files only
    _write_graph(folder, 'image_encoder', entries['image_encoder'])
    # Other output names.
    entry = copy.deepcopy(entries['panoptic_decoder'])
    entry['outputs']['scores'] = entry['outputs'].pop('cls_logits')
    _write_graph(folder, 'panoptic_decoder', entry)
    with pytest.raises(
            DeployFolderError,
            match='panoptic_decoder.onnx: the graph\'s outputs'):
        read_deploy_spec(str(folder))
    _write_graph(folder, 'panoptic_decoder', entries['panoptic_decoder'])
    # img_shape as float.
    entry = copy.deepcopy(entries['prompt_decoder'])
    entry['inputs']['img_shape']['dtype'] = 'float32'
    _write_graph(folder, 'prompt_decoder', entry)
    with pytest.raises(
            DeployFolderError,
            match='prompt_decoder.onnx: input "img_shape" is '
            'float32, deploy.json says int64'):
        read_deploy_spec(str(folder))
    (folder / 'prompt_decoder.onnx').write_bytes(b'not a graph')
    with pytest.raises(
            DeployFolderError,
            match='prompt_decoder.onnx is not a readable ONNX'):
        read_deploy_spec(str(folder))


def test_reads_without_torch(folder):
    """A deployment without PyTorch reads and checks a folder."""
    code = ('import sys; sys.modules["torch"] = None\n'
            'from rap_sam.deploy.deploy_spec import read_deploy_spec\n'
            f'spec = read_deploy_spec({str(folder)!r})\n'
            'print(spec.precision, spec.feature_names[0])\n'
            'assert sys.modules["torch"] is None\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['fp32', 'basis']


def test_output_folder_problems(tmp_path):
    """Folders an export cannot be put at, said before any work: an empty
    name resolved to the working directory, which the export replaced."""
    assert output_folder_problem(str(tmp_path / 'a' / 'b')) is None
    assert 'empty name' in output_folder_problem('')
    assert 'empty name' in output_folder_problem('  ')
    (tmp_path / 'notes.txt').write_text('mine')
    assert output_folder_problem(str(tmp_path / 'notes.txt' / 'out')) == (
        f'{tmp_path / "notes.txt"} is a file, not a folder: choose another '
        'output folder.')
    mount = next(
        m for m in ('/dev/shm', '/proc', '/sys', '/dev') if os.path.ismount(m))
    assert 'is a mount point' in output_folder_problem(mount)
    # Tried, not asked of os.access (which says yes to root for /sys); the
    # probe leaves nothing behind.
    assert output_folder_problem('/sys/kernel/rap_sam') in (
        'Cannot write /sys/kernel: Permission denied; choose a folder you '
        'can write to.', 'Cannot write /sys/kernel: Operation not '
        'permitted; choose a folder you can write to.')
    assert sorted(os.listdir(tmp_path)) == ['notes.txt']


def test_work_folders_of_killed_runs_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; '
         'print(os.getpid())'],
        capture_output=True,
        text=True,
        check=True)
    pid = int(dead.stdout)
    first = make_work_folder(str(tmp_path), 'export')
    prefix = os.path.basename(first).rsplit(str(os.getpid()), 1)[0]
    left = tmp_path / f'{prefix}{pid}-abc123'
    left.mkdir()
    (left / 'image_encoder.onnx').write_bytes(b'half')
    other_kind = tmp_path / f'.quantize-{prefix.split("-", 1)[1]}{pid}-x'
    other_kind.mkdir()
    (tmp_path / 'export').mkdir()
    second = make_work_folder(str(tmp_path), 'export')
    # The killed run's folder is gone; this process's (alive) folder, a
    # folder of another kind and the user's own stay.
    assert sorted(os.listdir(tmp_path)) == sorted([
        os.path.basename(first),
        os.path.basename(second), other_kind.name, 'export'
    ])
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(second).st_mode & 0o777 == 0o777 & ~umask


def test_a_graph_of_another_export_is_found(folder):
    """Same inputs and outputs, other contents (an int8 encoder copied into
    an fp32 folder, another model's graph): the recorded digest differs."""
    entry = make_spec()['graphs']['prompt_decoder']
    other = onnx_graph(entry)
    other.doc_string = 'another export'
    onnx.save(other, str(folder / 'prompt_decoder.onnx'))
    with pytest.raises(DeployFolderError) as err:
        read_deploy_spec(str(folder))
    assert str(err.value) == (
        f'{folder / "prompt_decoder.onnx"} is not the graph this export '
        "wrote (its SHA-256 differs from deploy.json's): the folder mixes "
        'files of different exports, or the graph was changed; re-export it.')
    # Folders written before digests were recorded are read by shape.
    data = json.loads((folder / SPEC_FILE).read_text())
    for graph in data['graphs'].values():
        del graph['sha256']
    (folder / SPEC_FILE).write_text(json.dumps(data))
    assert read_deploy_spec(str(folder)).precision == 'fp32'
    data['graphs']['image_encoder']['sha256'] = 'abc'
    (folder / SPEC_FILE).write_text(json.dumps(data))
    with pytest.raises(DeployFolderError, match='must be 64 lowercase hex'):
        read_deploy_spec(str(folder))


def _folder(path, **files):
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _files(path):
    return {p.name: p.read_text() for p in path.iterdir()}


def test_replace_folder_puts_the_export_in_place(tmp_path):
    """No folder, an empty one, an export with overwrite, and through a
    symbolic link (which stays): the new export is there and nothing of
    the work is left beside it."""
    for name, before in (('none', None), ('empty', {}),
                         ('old', dict(a='old', b='old'))):
        out = tmp_path / name
        if before is not None:
            _folder(out, **before)
        work = _folder(tmp_path / f'.work-{name}', a='new')
        replace_folder(str(work), str(out), overwrite=before is not None)
        assert _files(out) == dict(a='new')
        assert not work.exists()
    target = _folder(tmp_path / 'target', a='old')
    link = tmp_path / 'link'
    link.symlink_to(target)
    replace_folder(
        str(_folder(tmp_path / '.work-link', a='new')),
        str(link),
        overwrite=True)
    assert link.is_symlink() and _files(target) == dict(a='new')
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'empty', 'link', 'none', 'old', 'target'
    ]


def test_replace_folder_keeps_what_another_run_put_there(tmp_path):
    """Without overwrite a folder filled since the check is never
    replaced: it was another run's export (or the user's files), and an
    error says so."""
    from rap_sam.utils.output_files import OutputError
    out = _folder(tmp_path / 'out', a='theirs')
    work = _folder(tmp_path / '.work', a='mine')
    with pytest.raises(
            OutputError,
            match='out was filled by someone else while this export was '
            'made .* pass --overwrite'):
        replace_folder(str(work), str(out), overwrite=False)
    assert _files(out) == dict(a='theirs')
    assert _files(work) == dict(a='mine')  # the caller removes it
