"""``deploy.json``: what a runtime needs to use an export folder.

An export folder (``tools/deploy/export.py``) holds ``image_encoder.onnx``,
``panoptic_decoder.onnx``, ``prompt_decoder.onnx`` and ``deploy.json``::

    {
      "format_version": 1,
      "config": "eval_rap_sam_coco.py",
      "precision": "fp32", "opset": 17, "dynamic": false, "low_rank": true,
      "preprocess": {
        "scale": [1333, 800],        # (w, h) the image is resized to fit
        "keep_ratio": true,
        "pad_shape": [800, 1344],    # (h, w) of the graph input, zero pad
        "size_divisor": 32,
        "mean": [...], "std": [...], "bgr_to_rgb": true},
      "classes": [...], "num_things": 80,
      "test_cfg": {...},             # the panoptic fusion head's
      "graphs": {
        "image_encoder": {
          "file": "image_encoder.onnx",
          "inputs": {"image": {"shape": [1, 3, 800, 1344],
                               "dtype": "float32"}},
          "outputs": {"basis": {"shape": [1, 200, 336, 128], ...}},
          "sha256": "..."},          # of the graph file
        ...}}

Shapes list ints for fixed dimensions and strings for free ones (``"N"``
prompts; ``"H"``, ``"W"`` with dynamic export).

This module imports neither torch nor onnxruntime: runtimes read it with
the standard library (and ``onnx``, imported when graphs are checked).
Every problem with a folder is a :class:`DeployFolderError` (a
:class:`UserError`) whose one-line message names the file.
"""
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from rap_sam.utils.user_errors import UserError

FORMAT_VERSION = 1
SPEC_FILE = 'deploy.json'
#: The graphs of an export folder, by name (their file is ``{name}.onnx``).
GRAPH_NAMES = ('image_encoder', 'panoptic_decoder', 'prompt_decoder')
PRECISIONS = ('fp32', 'bf16', 'int8')
MIN_OPSET = 17

_PREPROCESS_KEYS = {
    'scale': list,
    'keep_ratio': bool,
    'pad_shape': list,
    'size_divisor': int,
    'mean': list,
    'std': list,
    'bgr_to_rgb': bool,
    'pad_value': (int, float)
}
_TOP_KEYS = {
    'format_version': int,
    'config': str,
    'precision': str,
    'opset': int,
    'dynamic': bool,
    'low_rank': bool,
    'preprocess': dict,
    'classes': list,
    'num_things': int,
    'test_cfg': dict,
    'graphs': dict
}


class DeployFolderError(UserError):
    """An export folder that is missing a file, or whose ``deploy.json`` or
    graphs are broken or disagree."""


def _check_type(value, kind, where: str, path: str) -> None:
    # bool is an int in Python; a flag given as a number is a mistake.
    if not isinstance(value, kind) or (kind is not bool
                                       and isinstance(value, bool)):
        name = getattr(kind, '__name__', None) or ' or '.join(k.__name__
                                                              for k in kind)
        raise DeployFolderError(
            f'{path}: {where} must be {name}, got {value!r}; '
            're-export the model with tools/deploy/export.py.')


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_dim(d) -> bool:
    """A fixed size (int >= 0) or a dimension's name (a string)."""
    if isinstance(d, str):
        return bool(d)
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def _check_shape(shape, where: str, path: str) -> None:
    if not isinstance(shape, list) or not all(_is_dim(d) for d in shape):
        raise DeployFolderError(
            f'{path}: {where} must be a list of sizes (ints) and dimension '
            f'names (strings), got {shape!r}.')


def validate_spec(spec: dict, path: str = SPEC_FILE) -> dict:
    """Check a deploy spec's keys, types and values; returns it.

    Raises:
        DeployFolderError: naming ``path`` and the first problem found.
    """
    if not isinstance(spec, dict):
        raise DeployFolderError(f'{path} must hold a JSON object, got '
                                f'{type(spec).__name__}.')
    version = spec.get('format_version')
    if version != FORMAT_VERSION:
        raise DeployFolderError(
            f'{path} has format_version {version!r}; this version of '
            f'rap_sam reads {FORMAT_VERSION}: re-export the model with '
            'tools/deploy/export.py.')
    for key, kind in _TOP_KEYS.items():
        if key not in spec:
            raise DeployFolderError(f'{path} has no "{key}": re-export the '
                                    'model with tools/deploy/export.py.')
        _check_type(spec[key], kind, f'"{key}"', path)
    if spec['precision'] not in PRECISIONS:
        raise DeployFolderError(f'{path}: precision must be one of '
                                f'{PRECISIONS}, got {spec["precision"]!r}.')
    if spec['opset'] < MIN_OPSET:
        raise DeployFolderError(f'{path}: opset {spec["opset"]} is below '
                                f'{MIN_OPSET}; re-export the model.')
    pre = spec['preprocess']
    for key, kind in _PREPROCESS_KEYS.items():
        if key not in pre:
            raise DeployFolderError(f'{path}: "preprocess" has no "{key}".')
        _check_type(pre[key], kind, f'"preprocess.{key}"', path)
    for key, length, low in (('scale', 2, 1), ('pad_shape', 2, 1),
                             ('mean', 3, None), ('std', 3, 1e-12)):
        values = pre[key]
        if len(values) != length or not all(
                _is_number(v) and (low is None or v >= low) for v in values):
            bound = '' if low is None else ' > 0'
            raise DeployFolderError(
                f'{path}: "preprocess.{key}" must be {length} numbers'
                f'{bound}, got {values!r}.')
    classes = spec['classes']
    if not classes or not all(isinstance(c, str) for c in classes):
        raise DeployFolderError(f'{path}: "classes" must be a non-empty list '
                                'of class names.')
    if not 0 <= spec['num_things'] <= len(classes):
        raise DeployFolderError(
            f'{path}: "num_things" must be between 0 and the number of '
            f'classes ({len(classes)}), got {spec["num_things"]}.')
    for key, value in spec['test_cfg'].items():
        if key.endswith(('_thr', '_per_image')) and not _is_number(value):
            raise DeployFolderError(
                f'{path}: "test_cfg.{key}" must be a number, got {value!r}.')
    graphs = spec['graphs']
    for name in GRAPH_NAMES:
        graph = graphs.get(name)
        if not isinstance(graph, dict):
            raise DeployFolderError(f'{path}: "graphs" has no "{name}".')
        _check_type(graph.get('file'), str, f'"graphs.{name}.file"', path)
        digest = graph.get('sha256')
        if digest is not None and not (isinstance(digest, str)
                                       and len(digest) == 64 and set(digest)
                                       <= set('0123456789abcdef')):
            raise DeployFolderError(
                f'{path}: "graphs.{name}.sha256" must be 64 lowercase hex '
                f'digits (the graph file\'s SHA-256), got {digest!r}.')
        if osp.basename(graph['file']) != graph['file']:
            raise DeployFolderError(
                f'{path}: "graphs.{name}.file" must be a file name in the '
                f'export folder, got {graph["file"]!r}.')
        for side in ('inputs', 'outputs'):
            io = graph.get(side)
            if not isinstance(io, dict) or not io:
                raise DeployFolderError(
                    f'{path}: "graphs.{name}.{side}" must map names to '
                    'shapes.')
            for tensor, info in io.items():
                where = f'"graphs.{name}.{side}.{tensor}"'
                _check_type(info, dict, where, path)
                _check_shape(info.get('shape'), where + '.shape', path)
                _check_type(info.get('dtype'), str, where + '.dtype', path)
        image = graph['inputs'].get('image', {}).get('shape') or []
        if name == 'image_encoder' and not spec['dynamic'] and \
                len(image) == 4 and list(image[2:]) != list(pre['pad_shape']):
            raise DeployFolderError(
                f'{path}: "preprocess.pad_shape" is {pre["pad_shape"]}, the '
                f'image encoder takes {image[2:]}: deploy.json was edited or '
                'mixed with another export; re-export the model.')
        # The graphs score the classes and "no object": a list of another
        # length would label the classes wrongly, or index past them.
        scores = graph['outputs'].get('cls_logits', {}).get('shape') or []
        if scores and isinstance(scores[-1], int) and \
                scores[-1] != len(classes) + 1:
            raise DeployFolderError(
                f'{path}: "classes" lists {len(classes)} classes, the '
                f'{name} scores {scores[-1] - 1} (and "no object"): '
                'deploy.json was edited or mixed with another export; '
                're-export the model (with --classes for your own).')
    return spec


def _sha256(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def write_spec(export_dir: str, spec: dict) -> str:
    """Validate ``spec`` and write it as ``{export_dir}/deploy.json``
    (through a temporary file, so a reader never sees half of it), with
    the SHA-256 of each graph file in the folder: a graph of another
    export with the same inputs and outputs (an int8 encoder in an fp32
    folder) is then found when the folder is read."""
    path = osp.join(export_dir, SPEC_FILE)
    for graph in spec.get('graphs', {}).values():
        if not isinstance(graph, dict) or not isinstance(
                graph.get('file'), str):
            continue  # validate_spec names the problem
        file = osp.join(export_dir, graph['file'])
        graph.pop('sha256', None)
        if osp.isfile(file):
            with open(file, 'rb') as f:
                graph['sha256'] = _sha256(f.read())
    validate_spec(spec, path)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(spec, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
    return path


#: ONNX element type names that numpy spells differently.
_NUMPY_NAMES = {'float': 'float32', 'double': 'float64', 'float16': 'float16'}


def _onnx_io(model) -> Dict[str, Dict[str, dict]]:
    """A loaded ONNX model's graph inputs / outputs as spec entries."""
    from onnx import TensorProto
    initializers = {t.name for t in model.graph.initializer}

    def entries(values) -> Dict[str, dict]:
        out = {}
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = [
                d.dim_value if d.HasField('dim_value') else
                (d.dim_param or '?') for d in t.shape.dim
            ]
            kind = TensorProto.DataType.Name(t.elem_type).lower()
            out[v.name] = dict(shape=dims, dtype=_NUMPY_NAMES.get(kind, kind))
        return out

    return dict(
        inputs=entries(model.graph.input), outputs=entries(model.graph.output))


def _check_graph(path: str, name: str, expected: dict) -> None:
    """The graph file's inputs and outputs have the names, ranks, fixed
    sizes and types deploy.json gives, and the file its SHA-256."""
    import onnx
    with open(path, 'rb') as f:
        data = f.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises its own DecodeError types
        raise DeployFolderError(
            f'{path} is not a readable ONNX model ({type(err).__name__}): '
            're-export the model with tools/deploy/export.py.') from err
    actual = _onnx_io(model)
    for side in ('inputs', 'outputs'):
        want, have = expected[side], actual[side]
        if set(want) != set(have):
            raise DeployFolderError(
                f'{path}: the graph\'s {side} are {sorted(have)}, '
                f'{SPEC_FILE} says {sorted(want)} for {name}: the folder '
                'mixes files of different exports; re-export it.')
        for tensor, info in want.items():
            shape, got = info['shape'], have[tensor]['shape']
            # A fixed size against another, or where deploy.json promises a
            # free one (a per-shape graph in a dynamic folder). A free size
            # where deploy.json has a fixed one is fine: the exporter leaves
            # some sizes unnamed that are fixed in practice.
            fixed_differs = any(
                isinstance(b, int) and a != b for a, b in zip(shape, got))
            if len(shape) != len(got) or fixed_differs:
                raise DeployFolderError(
                    f'{path}: {side[:-1]} "{tensor}" has shape {got}, '
                    f'{SPEC_FILE} says {shape}: the folder mixes files of '
                    'different exports; re-export it.')
            if info['dtype'] != have[tensor]['dtype']:
                raise DeployFolderError(
                    f'{path}: {side[:-1]} "{tensor}" is '
                    f'{have[tensor]["dtype"]}, {SPEC_FILE} says '
                    f'{info["dtype"]}; re-export the model.')
    # After the shapes, which name what differs; exports made before the
    # digests were recorded have none.
    if expected.get('sha256') not in (None, _sha256(data)):
        raise DeployFolderError(
            f'{path} is not the graph this export wrote (its SHA-256 differs '
            f'from {SPEC_FILE}\'s): the folder mixes files of different '
            'exports, or the graph was changed; re-export it.')


class DeploySpec:
    """A checked ``deploy.json``: the dict (:attr:`data`) and what runtimes
    ask of it by name."""

    #: Input names of the graphs (fixed by :mod:`rap_sam.deploy.graphs`).
    image_input = 'image'
    boxes_input = 'boxes'
    img_shape_input = 'img_shape'
    graph_names = GRAPH_NAMES

    def __init__(self, data: dict, path: str = SPEC_FILE):
        self.data = validate_spec(data, path)

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    @property
    def precision(self) -> str:
        return self.data['precision']

    @property
    def graph_files(self) -> Dict[str, str]:
        """File name of each graph, by graph name."""
        return {
            name: self.data['graphs'][name]['file']
            for name in GRAPH_NAMES
        }

    def graph_file(self, name: str) -> str:
        return self.graph_files[name]

    def input_names(self, name: str) -> List[str]:
        return list(self.data['graphs'][name]['inputs'])

    def output_names(self, name: str) -> List[str]:
        return list(self.data['graphs'][name]['outputs'])

    @property
    def feature_names(self) -> List[str]:
        """The encoder's outputs, which the decoders take by name."""
        return self.output_names('image_encoder')

    @property
    def img_shape_dtype(self) -> str:
        """numpy dtype of the prompt decoder's ``img_shape`` input."""
        return self.data['graphs']['prompt_decoder']['inputs'][
            self.img_shape_input]['dtype']

    @property
    def pad_shape(self) -> Optional[List[int]]:
        """``(h, w)`` every image is padded to; None when dynamic."""
        pre = self.data['preprocess']
        return None if self.data['dynamic'] else list(pre['pad_shape'])

    def image_preprocessor(self):
        """The numpy / OpenCV preprocessing this export expects
        (:class:`rap_sam.deploy.backends.ImagePreprocessor`)."""
        from .backends.image_preprocessor import ImagePreprocessor
        pre = self.data['preprocess']
        return ImagePreprocessor(
            scale=tuple(pre['scale']),
            mean=pre['mean'],
            std=pre['std'],
            bgr_to_rgb=pre['bgr_to_rgb'],
            size_divisor=pre['size_divisor'],
            pad_shape=self.pad_shape,
            pad_value=pre['pad_value'])

    def with_precision(self,
                       precision: str,
                       quantized_graphs: Sequence[str] = (),
                       calibration: Optional[int] = None,
                       weight_bits: Optional[int] = None) -> 'DeploySpec':
        """A copy saying the graphs are at ``precision`` (``quantized_graphs``
        were quantized, with ``calibration`` images and weights of
        ``weight_bits``)."""
        data = copy.deepcopy(self.data)
        data['precision'] = precision
        data['quantized_graphs'] = list(quantized_graphs)
        data['calibration_images'] = calibration
        data['int8_weight_bits'] = weight_bits
        return DeploySpec(data)

    def write(self, export_dir: str) -> str:
        """Write as ``{export_dir}/deploy.json``."""
        return write_spec(export_dir, self.data)


def read_deploy_spec(export_dir: str, check_graphs: bool = True) -> DeploySpec:
    """Read and check an export folder's ``deploy.json`` and, with
    ``check_graphs``, that each graph file is there and has the inputs and
    outputs it lists.

    Raises:
        DeployFolderError: a missing folder, ``deploy.json`` or graph
            file, invalid JSON, missing or mistyped keys, or a graph whose
            inputs or outputs differ; the message names the file.
    """
    export_dir = os.fspath(export_dir)
    if osp.exists(export_dir) and not osp.isdir(export_dir):
        raise DeployFolderError(
            f'{export_dir} is a file, not an export folder: give the folder '
            'tools/deploy/export.py wrote (the one holding deploy.json).')
    if not osp.isdir(export_dir):
        raise DeployFolderError(
            f'Export folder not found: {export_dir} (make one with '
            'tools/deploy/export.py).')
    path = osp.join(export_dir, SPEC_FILE)
    if not osp.isfile(path):
        raise DeployFolderError(
            f'{path} not found: {export_dir} is not an export folder (make '
            'one with tools/deploy/export.py).')
    try:
        with open(path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DeployFolderError(
            f'{path} is not valid JSON ({err}); re-export the model.') from err
    spec = DeploySpec(data, path)
    for name in GRAPH_NAMES:
        graph = data['graphs'][name]
        file = osp.join(export_dir, graph['file'])
        if not osp.isfile(file):
            raise DeployFolderError(
                f'{file} not found: the export folder is incomplete; '
                're-export the model with tools/deploy/export.py.')
        if check_graphs:
            _check_graph(file, name, graph)
    return spec


def list_names(names: Sequence[str], most: int = 3) -> str:
    """``names`` for a message: the first ``most``, then how many more."""
    more = len(names) - most
    return ', '.join(names[:most]) + (f' and {more} more' if more > 0 else '')


def foreign_entries(export_dir: str) -> List[str]:
    """What an export folder holds besides the export's own files
    (``deploy.json`` and the graphs it names, or the default graph names
    when it cannot be read), sorted: what replacing the export would
    delete that is not the export's."""
    own = {SPEC_FILE} | {f'{name}.onnx' for name in GRAPH_NAMES}
    try:
        with open(osp.join(export_dir, SPEC_FILE)) as f:
            graphs = json.load(f).get('graphs', {})
        own |= {
            g['file']
            for g in graphs.values()
            if isinstance(g, dict) and isinstance(g.get('file'), str)
        }
    except (OSError, ValueError, AttributeError):
        pass
    # ONNX's external data of a graph, if a large one was saved so.
    own |= {f'{name}.data' for name in own}
    return sorted(set(os.listdir(export_dir)) - own)


def output_folder_problem(out_dir: str) -> Optional[str]:
    """Why an export cannot be put at ``out_dir``, or None. An export is
    written to a folder beside ``out_dir`` and renamed into place, so the
    folder above it must be writable and ``out_dir`` no mount point; an
    empty name would resolve to the working directory and replace it."""
    if not os.fspath(out_dir).strip():
        return ('The output folder is an empty name: name the folder to '
                'write the export to.')
    target = osp.realpath(out_dir)
    if osp.ismount(target):
        return (f'{out_dir} is a mount point, which an export cannot '
                'replace (it is put in place by a rename): choose a folder '
                'inside it.')
    ancestor = osp.dirname(target)
    while not osp.lexists(ancestor):  # the folders the export will make
        ancestor = osp.dirname(ancestor)
    if not osp.isdir(ancestor):
        return (f'{ancestor} is a file, not a folder: choose another output '
                'folder.')
    from rap_sam.utils.output_files import OutputError, check_writable
    try:
        check_writable(ancestor)
    except OutputError as err:
        return str(err)
    return None


def _work_prefix(kind: str) -> str:
    import socket
    return f'.{kind}-{socket.gethostname()}-'


def make_work_folder(parent: str, kind: str) -> str:
    """A new folder in ``parent`` to write an export in before it is
    renamed into place, with the permissions the umask gives (not
    ``mkdtemp``'s private ones). Folders of the same ``kind`` that a run
    of this host left when it was killed (its process is gone) are
    removed first: nothing but that run ever used them."""
    import shutil
    import tempfile
    prefix = _work_prefix(kind)
    os.makedirs(parent, exist_ok=True)
    for name in os.listdir(parent):
        pid = name[len(prefix):].split('-')[0]
        if name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(osp.join(parent, name), ignore_errors=True)
    try:
        work = tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-', dir=parent)
    except OSError as err:  # the folder filled or changed since the check
        from rap_sam.utils.output_files import output_error
        raise output_error(parent, err) from err
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    return work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replace_folder(work: str, out_dir: str, overwrite: bool) -> None:
    """Put the finished folder ``work`` at ``out_dir`` (on the same file
    system) in one rename: a reader sees the old export or the new one,
    never a mix or none. A symbolic link at ``out_dir`` stays, and the
    folder it points to is replaced.

    Without ``overwrite`` only an empty folder or none is replaced: an
    export another run put there while this one worked stays (the check
    before the work cannot see it), and this one ends in an error.

    Raises:
        OutputError: Without ``overwrite``, ``out_dir`` is no longer empty;
            or the folder could not be moved.
    """
    import shutil
    import tempfile

    from rap_sam.utils.output_files import OutputError, output_error
    out_dir = osp.realpath(out_dir)
    if _moved(work, out_dir):
        return
    if not overwrite:
        raise OutputError(
            f'{out_dir} was filled by someone else while this export was '
            'made (another export to the same folder?): it is left as it '
            'is; choose another --out, or pass --overwrite to replace it.')
    # Another run may put its export there between the two renames: try
    # again a few times (the last to finish wins, as with one run).
    for _ in range(3):
        old = tempfile.mkdtemp(prefix='.replaced-', dir=osp.dirname(out_dir))
        os.rmdir(old)
        try:
            os.rename(out_dir, old)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise output_error(out_dir, err) from err
        try:
            if _moved(work, out_dir):
                return
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise OutputError(f'{out_dir} kept being replaced by other runs while '
                      'this export was put there: choose another --out.')


def _moved(work: str, out_dir: str) -> bool:
    """Rename the folder ``work`` to ``out_dir``; False where ``out_dir``
    is a folder that is not empty. A rename replaces an empty folder and
    fails on any other: the check and the move are one step that no other
    run can come between."""
    import errno

    from rap_sam.utils.output_files import output_error
    try:
        os.rename(work, out_dir)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise output_error(out_dir, err) from err
    return True
