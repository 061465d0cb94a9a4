"""Export RAP-SAM to ONNX with standard operators: three graphs and a
``deploy.json`` (see :mod:`rap_sam.deploy.graphs` and
:mod:`rap_sam.deploy.deploy_spec`).

Export is per shape by default: the image encoder takes one padded input
shape ``(H, W)`` (every image is resized to fit the scale, keeping its
aspect ratio, and zero-padded to it; ``deploy.json`` says ``"dynamic":
false``), which lets runtimes plan memory and kernels once. With
``dynamic=True`` height and width are free (``"H"``, ``"W"`` and the map's
``"h"``, ``"w"`` in deploy.json): images are padded to the size divisor
only, so portrait and landscape photos both fit. The number of prompts is
always free.
"""
import copy
import numbers
import os
import os.path as osp
import shutil
import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from rap_sam.utils.user_errors import UserError
from .deploy_spec import (FORMAT_VERSION, MIN_OPSET, SPEC_FILE, DeploySpec,
                          _onnx_io, foreign_entries, list_names,
                          make_work_folder, output_folder_problem,
                          replace_folder, write_spec)
from .graphs import (BOXES, DENSE_FEATURES, IMAGE, IMG_SHAPE,
                     LOW_RANK_FEATURES, MASK_LOGITS, build_graphs)

#: Graph inputs / outputs whose first or second axis is the prompts.
_PROMPT_AXES = {
    BOXES: {
        0: 'N'
    },
    'cls_logits': {
        1: 'N'
    },
    'mask_logits': {
        1: 'N'
    },
    'iou': {
        1: 'N'
    }
}


class ExportError(UserError):
    """An export that cannot be made as asked (folder, shape, option)."""


def _ceil_to(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


def _preprocess(model: nn.Module, scale: Tuple[int, int],
                pad_shape: Tuple[int, int]) -> dict:
    pre = model.data_preprocessor
    return dict(
        scale=[int(scale[0]), int(scale[1])],
        keep_ratio=True,
        pad_shape=[int(pad_shape[0]), int(pad_shape[1])],
        size_divisor=int(pre.pad_size_divisor),
        mean=[float(v) for v in pre.mean.flatten()],
        std=[float(v) for v in pre.std.flatten()],
        bgr_to_rgb=bool(pre._channel_conversion),
        pad_value=float(pre.pad_value))


def _test_cfg(model: nn.Module) -> dict:
    cfg = model.panoptic_fusion_head.test_cfg or {}
    return {
        k: v
        for k, v in dict(cfg).items() if isinstance(v, (bool, int, float, str))
    }


def _class_names(model: nn.Module) -> list:
    try:
        names = list(model.dataset_meta['classes'])
    except (AttributeError, KeyError, TypeError):
        names = []
    if len(names) != model.num_classes:
        names = [f'class_{i}' for i in range(model.num_classes)]
    return names


#: The longest side an export takes (the encoder's activations at 8192 x
#: 8192 are already tens of gigabytes).
MAX_SIDE = 8192


def input_shape(scale: Optional[Tuple[int, int]] = None,
                shape: Optional[Tuple[int, int]] = None,
                divisor: int = 1) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """The resize scale ``(w, h)`` and the encoder's input shape ``(H, W)``
    of an export (see :func:`export_model`'s ``scale`` and ``shape``).

    Raises:
        ExportError: a size that is not two positive whole numbers (each at
            most :data:`MAX_SIDE`), or a scale that does not fit the shape.
    """
    for name, value, order in (('--scale', scale, 'W H'), ('--shape', shape,
                                                           'H W')):
        if value is None:
            continue
        if len(value) != 2 or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool)
                and v >= 1 for v in value):
            raise ExportError(f'{name} must be two positive whole numbers '
                              f'{order}, got {tuple(value)}.')
        if max(value) > MAX_SIDE:
            raise ExportError(
                f'{name} {tuple(value)} has a side above {MAX_SIDE} pixels: '
                "the graphs' activations would not fit in memory; export at "
                'the scale you run at (e.g. --scale 1333 800).')
    divisor = max(int(divisor or 1), 1)
    if scale is None:
        scale = (shape[1], shape[0]) if shape is not None else (1333, 800)
    scale = (int(scale[0]), int(scale[1]))
    if shape is None:
        shape = (scale[1], scale[0])
    pad_shape = (_ceil_to(int(shape[0]),
                          divisor), _ceil_to(int(shape[1]), divisor))
    if max(scale) > max(pad_shape) or min(scale) > min(pad_shape):
        raise ExportError(f'The scale {scale} (w, h) does not fit the input '
                          f'shape {pad_shape} (H, W): give a larger --shape '
                          'or a smaller --scale.')
    return scale, pad_shape


def _check_graph_ops(path: str, opset: int) -> None:
    """Every node in ONNX's default domain (no custom operator), the default
    opset at least ``opset``, no Loop (slow in every runtime)."""
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    custom = {n.domain for n in model.graph.node} - {'', 'ai.onnx'}
    if custom:
        raise RuntimeError(f'{path} uses custom operator domains {custom}')
    version = max(
        o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    if version < opset:
        raise RuntimeError(f'{path} has opset {version} < {opset}')
    loops = [n.name for n in model.graph.node if n.op_type == 'Loop']
    if loops:
        raise RuntimeError(f'{path} has Loop nodes {loops[:3]}')


def check_export_options(out_dir: str,
                         opset: int = MIN_OPSET,
                         overwrite: bool = False) -> None:
    """What :func:`export_model` refuses, checked before any work (the
    export tool calls it before it builds the model).

    Raises:
        ExportError: an opset below 17; ``out_dir`` being a
            file, or a non-empty folder without ``overwrite``, or, with
            ``overwrite``, a non-empty folder that is not an export (no
            deploy.json) or one holding other files than the export's:
            overwrite replaces an export, never other files.
    """
    if isinstance(opset,
                  bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f'opset must be an integer >= {MIN_OPSET}, got '
                          f'{opset!r}.')
    out_dir = os.fspath(out_dir)
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise ExportError(f'{out_dir} is a file, not a folder: choose '
                          'another --out.')
    problem = output_folder_problem(out_dir)
    if problem:
        raise ExportError(problem)
    if not osp.isdir(out_dir) or not os.listdir(out_dir):
        return
    if not overwrite:
        raise ExportError(f'{out_dir} is not empty: choose another --out or '
                          'pass --overwrite to replace it.')
    if not osp.isfile(osp.join(out_dir, SPEC_FILE)):
        raise ExportError(
            f'{out_dir} is not an export folder (no {SPEC_FILE}): '
            '--overwrite replaces an export only; choose another --out.')
    foreign = foreign_entries(out_dir)
    if foreign:
        raise ExportError(
            f"{out_dir} holds files that are not the export's "
            f'({list_names(foreign)}), which --overwrite would delete: move '
            'them out or choose another --out.')


def _prepare(model: nn.Module) -> nn.Module:
    """A copy of ``model`` ready to trace (the caller's stays as it is)."""
    from .prepare import prepare
    return prepare(copy.deepcopy(model).cpu().eval(), 'export')


def export_model(model: nn.Module,
                 out_dir: str,
                 cfg=None,
                 scale: Optional[Tuple[int, int]] = None,
                 shape: Optional[Tuple[int, int]] = None,
                 dynamic: bool = False,
                 opset: int = MIN_OPSET,
                 low_rank: bool = True,
                 class_names: Optional[Sequence[str]] = None,
                 config_name: Optional[str] = None,
                 overwrite: bool = False) -> DeploySpec:
    """Write ``image_encoder.onnx``, ``panoptic_decoder.onnx``,
    ``prompt_decoder.onnx`` and ``deploy.json`` to ``out_dir``.

    Args:
        model (RapSAM): A loaded model (not changed: a copy is prepared
            with ``prepare(copy, 'export')``). Its class embeddings (the
            vocabulary) are baked into the decoders.
        out_dir (str): The export folder; must not exist or be empty,
            unless ``overwrite``. The graphs are written to a temporary
            folder beside it first, so a failed export leaves whatever was
            there untouched.
        cfg (Config, optional): The model's config; its name is recorded.
        scale (tuple, optional): ``(w, h)`` images are resized to fit
            (keep-ratio). Default: ``shape`` as ``(w, h)``, else
            (1333, 800).
        shape (tuple, optional): ``(H, W)`` of the encoder's input; default
            ``scale`` rounded up to the size divisor.
        dynamic (bool): Free height and width: images are padded to the
            size divisor only, and the graphs take any multiple of it
            (``shape`` is then only the traced size).
        opset (int): ONNX opset, at least 17.
        low_rank (bool): The encoder outputs the neck's aggregated map
            (``basis``) and the decoders apply its last 1x1 conv, about
            half the work per pass over the map (measured: see
            docs/deploy.md); False outputs the 256-channel ``features``.
        class_names (list[str], optional): Default: the model's
            ``dataset_meta``.
        overwrite (bool): Replace an existing export in ``out_dir`` (a
            non-empty folder without deploy.json is never replaced).

    Returns:
        DeploySpec: what was written as ``deploy.json``.
    """
    check_export_options(out_dir, opset, overwrite)
    out_dir = os.fspath(out_dir)
    scale, pad_shape = input_shape(
        scale, shape, int(model.data_preprocessor.pad_size_divisor or 1))

    names = list(class_names) if class_names else _class_names(model)
    if config_name is None and cfg is not None:
        config_name = osp.basename(getattr(cfg, 'filename', '') or '')
    prepared = _prepare(model)
    divisor = int(model.data_preprocessor.pad_size_divisor or 1)
    # The stride-4 map's height: fixed, or (dynamic) a multiple of this.
    multiple = divisor if dynamic else pad_shape[0]
    map_height = multiple // 4 if multiple % 4 == 0 else 1
    graphs = build_graphs(prepared, low_rank, map_height)

    # Beside the folder a link at out_dir points to: replaced in one rename.
    work = make_work_folder(osp.dirname(osp.realpath(out_dir)), 'export')
    try:
        io_specs = _export_graphs(graphs, work, pad_shape, opset, dynamic)
        spec = dict(
            format_version=FORMAT_VERSION,
            config=config_name or '',
            precision='fp32',
            opset=opset,
            dynamic=bool(dynamic),
            low_rank=bool(low_rank),
            preprocess=_preprocess(prepared, scale, pad_shape),
            classes=names,
            num_things=int(prepared.num_things_classes),
            test_cfg=_test_cfg(prepared),
            graphs=io_specs)
        write_spec(work, spec)
        replace_folder(work, out_dir, overwrite)
    finally:
        if osp.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return DeploySpec(spec)


def _free_axes(names: Sequence[str], prompts: bool,
               dynamic: bool) -> Optional[dict]:
    """The free axes of each named graph input / output: the prompts
    (``N``) and, dynamic, the image's ``H``, ``W`` and the map's ``h``,
    ``w``."""
    axes = {}
    for name in names:
        free = dict(_PROMPT_AXES.get(name, {})) if prompts else {}
        if dynamic:
            if name == IMAGE:
                free.update({2: 'H', 3: 'W'})
            elif name == MASK_LOGITS:
                free.update({2: 'h', 3: 'w'})
            elif name in (DENSE_FEATURES, LOW_RANK_FEATURES):
                free.update({1: 'h', 2: 'w'})
        if free:
            axes[name] = free
    return axes or None


def _export_graphs(graphs: dict,
                   work: str,
                   pad_shape: Tuple[int, int],
                   opset: int,
                   dynamic: bool = False) -> dict:
    """Trace and write the three graphs; their deploy.json entries."""
    import onnx
    encoder = graphs['image_encoder']
    feature = encoder.output_names[0]
    image = torch.randn(
        1, 3, *pad_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = encoder(image)
    h, w = pad_shape
    # Two boxes (one traced prompt could fix a broadcast of size 1).
    boxes = torch.tensor([[4., 4., 10., 10.], [0., 0., w / 2, h / 2]])
    img_shape = torch.tensor([h, w], dtype=torch.int64)
    jobs = [
        ('image_encoder', encoder, (image, ), [IMAGE], [feature], False),
        ('panoptic_decoder', graphs['panoptic_decoder'], (features, ),
         [feature], graphs['panoptic_decoder'].output_names, False),
        ('prompt_decoder', graphs['prompt_decoder'],
         (features, boxes, img_shape), [feature, BOXES, IMG_SHAPE],
         graphs['prompt_decoder'].output_names, True),
    ]
    entries = {}
    for name, module, args, inputs, outputs, prompts in jobs:
        axes = _free_axes(inputs + outputs, prompts, dynamic)
        path = osp.join(work, f'{name}.onnx')
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on Python-side checks (channel counts,
            # shapes): they are constants of a per-shape graph.
            warnings.simplefilter('ignore')
            torch.onnx.export(
                module,
                args,
                path,
                input_names=inputs,
                output_names=outputs,
                opset_version=opset,
                dynamic_axes=axes,
                do_constant_folding=True,
                dynamo=False)
        _check_graph_ops(path, opset)
        io = _onnx_io(onnx.load(path, load_external_data=False))
        with torch.no_grad():
            results = module(*args)
        results = results if isinstance(results, tuple) else (results, )
        # The exporter names the free axes of outputs it cannot size; all
        # but the prompts' are fixed by the input shape.
        for out, result in zip(outputs, results):
            free = (axes or {}).get(out, {})
            io['outputs'][out]['shape'] = [
                free.get(i, int(size)) for i, size in enumerate(result.shape)
            ]
        entries[name] = dict(file=f'{name}.onnx', **io)
    return entries
