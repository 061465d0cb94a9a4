"""The models a benchmark times: RAP-SAM from a config, mmdet's
Mask2Former, and the variants (backend, precision, post-processing) of a
run, with why one cannot run here."""
import copy
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn as nn

from rap_sam.testing.seeded_weights import randomize_
from ..backends import reads_int8_folder, runs_bf16
from ..prepare import prepare

#: Where a variant runs: the torch model, or its export on a runtime.
BACKENDS = ('torch', 'onnxruntime', 'openvino')
RUNTIMES = ('onnxruntime', 'openvino')
MASK2FORMER_CONFIG = (
    'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')


def build_rap_sam(config: str,
                  checkpoint: Optional[str] = None,
                  seed: int = 0,
                  notes: Optional[List[str]] = None,
                  cfg_options: Optional[dict] = None) -> nn.Module:
    """RAP-SAM as ``config`` builds it (``cfg_options`` merged into it, as
    ``Config.merge_from_dict`` takes them), in eval mode, with
    ``checkpoint``'s weights or seeded random ones; what it had to make up
    is appended to ``notes``."""
    from mmdet.registry import MODELS

    from rap_sam.utils.class_embeddings import class_embedding_path
    from rap_sam.utils.config_file import read_config
    from rap_sam.utils.runner_cli import (merge_model_options,
                                          unexpected_options)

    notes = [] if notes is None else notes
    cfg = read_config(config)
    merge_model_options(cfg, cfg_options)
    cfg.model.backbone.init_cfg = None
    head = cfg.model.panoptic_head
    name = head.get('ov_classifier_name')
    if name and not osp.isfile(
            class_embedding_path(name, head.get('ov_classifier_dir'))):
        notes.append(f'class embeddings {name}.pth not found: random '
                     'class embeddings (timing does not depend on them)')
        head.ov_classifier_name = None
    torch.manual_seed(seed)
    # A misspelt last key is a keyword the class does not take.
    with unexpected_options(cfg_options):
        model = MODELS.build(cfg.model)
    if checkpoint:
        from rap_sam.utils import load_model_weights
        load_model_weights(model, checkpoint)
    else:
        randomize_(model, seed)
        notes.append('random weights (seeded)')
    return model.eval()


def build_mask2former(seed: int) -> nn.Module:
    """mmdet's Mask2Former R50 panoptic, from the config file mmdet ships."""
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    register_all_modules(init_default_scope=False)
    root = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
    cfg = Config.fromfile(osp.join(root, MASK2FORMER_CONFIG))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    randomize_(model, seed)
    return model.eval()


class Variant(NamedTuple):
    """An inference setting of RAP-SAM: a mode of
    :func:`rap_sam.deploy.prepare` on the torch backend, or the model's
    export (``mode='export'``) on a runtime backend, with the
    post-processing ``post`` (:data:`rap_sam.deploy.prepare.POSTS`)."""
    mode: str
    precision: str = 'fp32'
    compile: bool = False
    backend: str = 'torch'
    post: str = 'exact'

    @property
    def name(self) -> str:
        """``'reference'``, ``'fast'``, ``'fast-bf16'``, ``'fast-compile'``,
        ``'onnxruntime'``, ``'openvino-int8'``, ``'openvino-int8-half'``
        ..."""
        parts = [self.mode if self.backend == 'torch' else self.backend]
        if self.precision != 'fp32':
            parts.append(self.precision)
        if self.compile:
            parts.append('compile')
        if self.post != 'exact':
            parts.append(self.post)
        return '-'.join(parts)


def variants(
    modes: Sequence[str],
    precisions: Sequence[str] = ('fp32', ),
    compile: bool = False,
    backends: Sequence[str] = BACKENDS[:1],
    posts: Sequence[str] = ('exact', )
) -> List[Variant]:
    """Every variant a benchmark run asks for, runnable here or not (see
    :func:`skip_reason`): on torch each of ``modes`` in fp32, the fast mode
    in every other precision, and with ``compile`` the fp32 fast mode
    compiled too; on each runtime backend the export in every precision;
    each fast or export variant with every post-processing of ``posts``
    (the reference mode with the exact one only: an approximate
    post-processing asked for with the reference mode alone is timed on
    the fast mode, as a precision other than fp32 is)."""
    out = []
    for backend in backends:
        if backend != 'torch':
            out += [
                Variant('export', p, False, backend, post) for p in precisions
                for post in posts
            ]
            continue
        out += [Variant(m) for m in modes if m != 'fast']
        for precision in precisions:
            asked = precision != 'fp32' or 'fast' in modes
            out += [
                Variant('fast', precision, post=post) for post in posts
                if asked or post != 'exact'
            ]
        if compile:
            out.append(Variant('fast', 'fp32', True))
    return out


def skip_reason(variant: Variant,
                device: Union[str, torch.device] = 'cpu',
                task: str = 'image',
                machine: Optional[dict] = None) -> Optional[str]:
    """Why ``variant`` cannot run in this benchmark (None when it can):
    a combination that does not exist, a runtime that is not installed, a
    CPU without the instructions a precision needs."""
    machine = machine or {}
    device = torch.device(device)
    if variant.post != 'exact' and task == 'video':
        return (f"post={variant.post!r} is for images: a video model's clip "
                'linker reads exact per-query masks')
    lacks_bf16 = (
        device.type == 'cpu' and 'avx512_bf16' in machine
        and not (machine['avx512_bf16'] or machine.get('amx_bf16')))
    if variant.backend == 'torch':
        if reads_int8_folder(variant.precision):
            return (
                'torch has no int8 path here: int8 is post-training static '
                'quantization of the ONNX export (onnxruntime, openvino)')
        if runs_bf16(variant.precision) and lacks_bf16:
            # Not worth timing: a 3x3 conv took 12x its fp32 time on an
            # AVX2 EPYC, a 2048-square torch.mm 600x.
            return ('this CPU has neither AVX-512 BF16 nor AMX: torch '
                    'computes bf16 many times slower than fp32')
        return None
    if variant.backend not in RUNTIMES:
        return f'unknown backend {variant.backend!r}'
    if device.type != 'cpu':
        return (f'the {variant.backend} backend runs on the CPU here '
                f'(device {device})')
    if task == 'video':
        return 'the export has no clip graph: videos run on torch only'
    from ..backends import BACKENDS as RUNTIME_CLASSES
    from ..backends import BackendError, import_runtime
    runtime = RUNTIME_CLASSES[variant.backend]
    if variant.precision not in runtime.precisions:
        if variant.backend == 'onnxruntime' and variant.precision == 'bf16':
            return ('ONNX Runtime has no bfloat16 CPU kernels (MatMul, Conv, '
                    'Softmax ...): bf16 runs on openvino and torch')
        return (f'{variant.backend} runs {", ".join(runtime.precisions)}, '
                f'not {variant.precision}')
    if runs_bf16(variant.precision) and lacks_bf16:
        # OpenVINO would quietly compute in fp32: not a bf16 figure.
        return ('this CPU has neither AVX-512 BF16 nor AMX: OpenVINO would '
                'run fp32')
    module = dict(onnxruntime='onnxruntime', openvino='openvino')
    try:
        import_runtime(module[variant.backend], module[variant.backend],
                       variant.backend)
    except BackendError as err:
        return str(err)
    return None


def build_variant(model: nn.Module, variant: Variant) -> nn.Module:
    """A prepared copy of ``model`` (which stays as it is); torch variants
    only (runtime variants: :class:`RuntimeExports`)."""
    if variant.backend != 'torch':
        raise ValueError(f'{variant.name} runs an export, not a torch model: '
                         'use RuntimeExports')
    return prepare(
        copy.deepcopy(model), variant.mode, variant.precision, variant.compile,
        variant.post)
