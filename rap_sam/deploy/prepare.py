"""The one inference switch: :func:`prepare`."""
import torch.nn as nn

from rap_sam.models.detectors import RapSAM, RapSAMVideo
from rap_sam.models.detectors.rap_sam import AUTOCAST_DTYPES
from rap_sam.models.seg_heads import ScoredPanopticFusionHead
from rap_sam.models.seg_heads.half_resolution_fusion_head import \
    HalfResolutionFusionHead
from rap_sam.models.utils.fuse_conv_relu import fuse_conv_relu
from rap_sam.utils.user_errors import UserError
from .reference import to_reference

#: What :func:`prepare` can make of a model.
MODES = ('reference', 'fast', 'export')
#: Precisions of the PyTorch model (int8 is for exported graphs).
PRECISIONS = tuple(AUTOCAST_DTYPES)
#: Post-processings: ``'exact'`` (mmdet's fusion results, bit for bit) and
#: ``'half'`` (approximate: the fusion at half the result's size,
#: :class:`~rap_sam.models.seg_heads.HalfResolutionFusionHead`).
POSTS = ('exact', 'half')


class DeployModeError(UserError, ValueError):
    """A mode, precision or model :func:`prepare` cannot apply."""


def _check_post(post) -> None:
    if post not in POSTS:
        raise DeployModeError(
            f'post must be one of {", ".join(POSTS)}; got {post!r}.')


def _check(model, mode, precision, compile, post) -> None:
    _check_post(post)
    if mode not in MODES:
        raise DeployModeError(
            f'mode must be one of {", ".join(MODES)}; got {mode!r}.')
    if precision == 'int8':
        raise DeployModeError(
            'precision int8 is for exported graphs (tools/deploy/export.py '
            '--precision int8); the PyTorch model runs fp32, bf16 or fp16.')
    if precision not in PRECISIONS:
        raise DeployModeError(f'precision must be one of '
                              f'{", ".join(PRECISIONS)}; got {precision!r}.')
    if not isinstance(compile, bool):
        raise DeployModeError(
            f'compile must be True or False; got {compile!r}.')
    if mode != 'fast' and (precision != 'fp32' or compile or post != 'exact'):
        raise DeployModeError(
            f'mode {mode!r} runs fp32 without torch.compile, with the exact '
            "post-processing; precision, compile and post apply to mode "
            "'fast'.")
    if not isinstance(model, RapSAM):
        raise DeployModeError('prepare() takes a RAP-SAM model (RapSAM or '
                              f'RapSAMVideo); got {type(model).__name__}.')
    if post != 'exact' and isinstance(model, RapSAMVideo):
        raise DeployModeError(
            f"post={post!r} is for image models; a video model's clip "
            "linker reads every query's exact masks (use post='exact').")
    if post != 'exact':
        # Before anything is converted: a refused model stays as it was.
        post_head(model.panoptic_fusion_head, post)


def post_head(head: ScoredPanopticFusionHead,
              post: str) -> ScoredPanopticFusionHead:
    """The fusion head of post-processing ``post`` (one of :data:`POSTS`)
    with ``head``'s classes, ``test_cfg`` and chunking settings: ``head``
    itself when it already is.

    Raises:
        DeployModeError: an unknown ``post``, or a ``head`` that is not a
            :class:`~rap_sam.models.seg_heads.ScoredPanopticFusionHead`.
    """
    _check_post(post)
    if not isinstance(head, ScoredPanopticFusionHead):
        raise DeployModeError(
            f'post={post!r} needs a ScoredPanopticFusionHead; the model\'s '
            f'fusion head is {type(head).__name__}.')
    cls = HalfResolutionFusionHead if post == 'half' else \
        ScoredPanopticFusionHead
    if type(head) is cls:
        return head
    twin = cls(
        num_things_classes=head.num_things_classes,
        num_stuff_classes=head.num_stuff_classes,
        test_cfg=head.test_cfg)
    for name in ('chunk_size', 'chunk_workers', 'band_fraction'):
        if name in vars(head):
            setattr(twin, name, getattr(head, name))
    return twin


def use_post(model: nn.Module, post: str) -> nn.Module:
    """Give a model's fusion head the post-processing ``post`` (one of
    :data:`POSTS`, :func:`post_head`); in place, returns the model.
    :func:`prepare` calls it for the torch model; a runtime backend's
    post-processing
    (:class:`~rap_sam.deploy.backends.post_processor.RapSAMPostProcessor`,
    which has the same ``panoptic_fusion_head``) takes it directly."""
    model.panoptic_fusion_head = post_head(
        getattr(model, 'panoptic_fusion_head', None), post)
    return model


def prepare(model: nn.Module,
            mode: str = 'fast',
            precision: str = 'fp32',
            compile: bool = False,
            post: str = 'exact') -> nn.Module:
    """Make a RAP-SAM model ready for inference; in place, returns it.

    Modes:

    - ``'reference'``: what the reference code computes (mmcv's deformable
      conv kernel on every device, BatchNorms as layers, dense NCHW
      features, every mask upsampled before mmdet's fusion): see
      :mod:`rap_sam.deploy.reference`. The baseline of the benchmark and of
      the equivalence tests.
    - ``'fast'``: BatchNorms folded into the convs, channels-last memory
      (the deformable convs' weights laid out for their GEMM), in fp32 and
      bf16 without compile the backbone's ReLUs and residual sums fused
      into its convs (oneDNN on CPUs,
      :mod:`rap_sam.models.utils.fuse_conv_relu`),
      the neck's low-rank output, the deformable convs as the config says
      (``'auto'``: gather + GEMM on CPUs, mmcv's kernel on GPUs). The same
      outputs as ``'reference'`` to float rounding. ``precision='bf16'``
      or ``'fp16'`` adds ``torch.autocast`` over backbone, neck and head
      (approximate; the post-processing stays fp32; under bf16 the fused
      convs run in bf16); ``compile=True`` compiles backbone and neck
      with ``torch.compile`` (inductor, weights
      frozen as constants; the first call compiles, about half a minute on
      2 cores; run under ``torch.no_grad`` or ``torch.inference_mode``).
    - ``'export'``: BatchNorms folded, deformable convs in standard ONNX
      operators (``dcn_impl='onnx'``), fp32, NCHW, dense features: the
      model ``torch.onnx.export`` traces.

    Post-processings (``post``, mode ``'fast'`` only, image models):

    - ``'exact'`` (default): the fusion head's results are mmdet's
      ``MaskFormerFusionHead``'s, bit for bit.
    - ``'half'``: approximate and opt-in: the fusion at half the result's
      height and width, masks and panoptic map repeated 2x2 to full size
      (:class:`~rap_sam.models.seg_heads.HalfResolutionFusionHead`; same
      fields, dtypes and shapes; measured in docs/deploy.md).

    The model is put in eval mode; load checkpoints before (folded
    BatchNorms have no keys). A model is prepared once: the same call again
    returns it unchanged, a different one raises (prepare a fresh copy).

    Args:
        model (RapSAM): The model, as built (and loaded).
        mode (str): ``'reference'``, ``'fast'`` or ``'export'``.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'`` (``'fast'``
            only).
        compile (bool): ``torch.compile`` backbone and neck (``'fast'``
            only).
        post (str): ``'exact'`` or ``'half'`` (``'fast'`` only).

    Raises:
        DeployModeError: an unknown mode, precision or post, a setting the
            mode
            does not take, a model that is not RAP-SAM or that was prepared
            differently before.
    """
    _check(model, mode, precision, compile, post)
    setting = dict(mode=mode, precision=precision, compile=compile, post=post)
    done = getattr(model, 'deploy_setting', None)
    if done == setting:
        return model
    if done is not None:
        raise DeployModeError(
            f'the model was already prepared with {_describe(done)}, which '
            'cannot be undone; prepare a fresh model (build it again, or '
            'copy.deepcopy it before the first prepare()).')
    model.eval()
    if mode == 'reference':
        to_reference(model)
    else:
        model.switch_to_deploy(
            low_rank_output=mode == 'fast',
            channels_last=mode == 'fast',
            precision=precision)
        if mode == 'export':
            model.neck.dcn_impl = 'onnx'
        else:
            # After the channels-last conversion, which would undo it.
            model.neck.deconv.gemm_weight_layout()
            if precision in ('fp32', 'bf16') and not compile:
                # Inductor fuses by itself; oneDNN's fused convs run in
                # fp32 and bf16 (fp16 autocast runs the plain ops).
                fuse_conv_relu(model.backbone)
        if compile:
            # Freezing per compile (not inductor's process-wide flag):
            # weights become constants that oneDNN prepacks once.
            for module in (model.backbone, model.neck):
                module.compile(options={'freezing': True})
        if post != 'exact':
            use_post(model, post)
    model.deploy_setting = setting
    return model


def _describe(setting: dict) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in setting.items())
