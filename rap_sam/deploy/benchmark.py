"""Measuring RAP-SAM's inference: the library behind
``tools/analysis/benchmark.py`` (which parses arguments and prints).

- models: :func:`build_rap_sam` (a config, with a checkpoint's or seeded
  random weights), :func:`build_mask2former` (mmdet's own Mask2Former R50
  panoptic, the comparison), :func:`build_variant` (a variant of RAP-SAM
  from its inference setting, through :func:`rap_sam.deploy.prepare`);
- inputs: :func:`load_image`, :func:`image_data`, :func:`video_data`,
  :func:`click_boxes`, :func:`preprocess`;
- timing: :class:`Runner` (one model's ``predict`` end to end and per
  stage through forward hooks), :func:`time_interleaved` (every runner once
  per round, so load on the machine falls on all alike);
- complexity: :func:`count_flops`, :func:`peak_memory_mb`;
- agreement: :func:`compare_results`, :func:`head_output_error`;
- the machine: :func:`machine_info`, :func:`load_average`,
  :func:`tune_cpu_allocator`.
"""
import copy
import ctypes
import ctypes.util
import os
import os.path as osp
import platform
import statistics
import time
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .prepare import prepare

STAGES = ('backbone', 'neck', 'head', 'post', 'e2e')
MASK2FORMER_CONFIG = (
    'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
DEMO_IMAGE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'demo',
    'demo.jpg')


# ----------------------------------------------------------------------
# models
# ----------------------------------------------------------------------
def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Seeded random weights of a sensible scale (BN statistics included),
    as the tests use, so that every layer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not p.is_floating_point():
                continue
            if name.endswith('running_var'):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith('running_mean'):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() <= 1:
                p.copy_(
                    torch.randn(p.shape, generator=g) * 0.1 +
                    (1.0 if name.endswith('weight') else 0.0))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def build_rap_sam(config: str,
                  checkpoint: Optional[str] = None,
                  seed: int = 0,
                  notes: Optional[List[str]] = None) -> nn.Module:
    """RAP-SAM as ``config`` builds it, in eval mode, with ``checkpoint``'s
    weights or seeded random ones; what it had to make up is appended to
    ``notes``."""
    from mmdet.registry import MODELS

    from rap_sam.utils.class_embeddings import class_embedding_path
    from rap_sam.utils.config_file import read_config

    notes = [] if notes is None else notes
    cfg = read_config(config)
    cfg.model.backbone.init_cfg = None
    head = cfg.model.panoptic_head
    name = head.get('ov_classifier_name')
    if name and not osp.isfile(
            class_embedding_path(name, head.get('ov_classifier_dir'))):
        notes.append(f'class embeddings {name}.pth not found: random '
                     'class embeddings (timing does not depend on them)')
        head.ov_classifier_name = None
    torch.manual_seed(seed)
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
    """An inference setting of RAP-SAM, as :func:`rap_sam.deploy.prepare`
    takes it."""
    mode: str
    precision: str = 'fp32'
    compile: bool = False

    @property
    def name(self) -> str:
        """``'reference'``, ``'fast'``, ``'fast-bf16'``,
        ``'fast-compile'`` ..."""
        parts = [self.mode]
        if self.precision != 'fp32':
            parts.append(self.precision)
        if self.compile:
            parts.append('compile')
        return '-'.join(parts)


def variants(modes: Sequence[str],
             precisions: Sequence[str] = ('fp32', ),
             compile: bool = False) -> List[Variant]:
    """The variants a benchmark run times: each of ``modes`` in fp32, the
    fast mode in every other precision, and with ``compile`` the fp32 fast
    mode compiled too."""
    out = [Variant(m) for m in modes if m != 'fast']
    for precision in precisions:
        if precision != 'fp32' or 'fast' in modes:
            out.append(Variant('fast', precision))
    if compile:
        out.append(Variant('fast', 'fp32', True))
    return out


def build_variant(model: nn.Module, variant: Variant) -> nn.Module:
    """A prepared copy of ``model`` (which stays as it is)."""
    return prepare(
        copy.deepcopy(model), variant.mode, variant.precision, variant.compile)


# ----------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------
def load_image(shape: Tuple[int, int],
               path: Optional[str] = None,
               seed: int = 0) -> np.ndarray:
    """A BGR uint8 image of ``shape`` (h, w): ``path`` (default: the
    repository's demo/demo.jpg) resized, or seeded noise without one."""
    import cv2
    h, w = shape
    path = path or DEMO_IMAGE
    img = cv2.imread(path) if osp.isfile(path) else None
    if img is None:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def image_data(img: np.ndarray, prompts: Optional[torch.Tensor] = None):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    h, w = img.shape[:2]
    sample = DetDataSample(
        metainfo=dict(
            img_id=0,
            img_shape=(h, w),
            ori_shape=(h, w),
            scale_factor=(1., 1.)))
    if prompts is not None:
        sample.gt_instances_collected = InstanceData(
            point_coords=prompts,
            pb_labels=torch.ones(len(prompts), dtype=torch.long))
    return dict(
        inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()],
        data_samples=[sample])


def video_data(img: np.ndarray, num_frames: int):
    from mmdet.structures import DetDataSample, TrackDataSample
    h, w = img.shape[:2]
    frames = np.stack([np.roll(img, 8 * t, axis=1) for t in range(num_frames)])
    samples = [
        DetDataSample(
            metainfo=dict(
                img_id=t,
                frame_id=t,
                video_length=num_frames,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1., 1.))) for t in range(num_frames)
    ]
    return dict(
        inputs=[torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()],
        data_samples=[TrackDataSample(video_data_samples=samples)])


def click_boxes(h: int, w: int, num: int) -> torch.Tensor:
    """``num`` clicks spread over the image, as 6-px boxes."""
    from rap_sam.models.utils import clicks_to_boxes
    g = torch.Generator().manual_seed(num)
    clicks = torch.rand(
        num, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8]) + torch.tensor(
            [w * 0.1, h * 0.1])
    return clicks_to_boxes(clicks)


def preprocess(model: nn.Module, data: dict, device) -> dict:
    data = model.data_preprocessor(copy.deepcopy(data), False)
    return dict(
        inputs=data['inputs'].to(device), data_samples=data['data_samples'])


# ----------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------
class Clock:

    def __init__(self, device: torch.device):
        self.cuda = device.type == 'cuda'

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class StageTimer:
    """Forward hooks adding up the time spent in named submodules."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.totals: Dict[str, float] = {}
        self._start: Dict[str, float] = {}
        self.handles = []

    def attach(self, module: nn.Module, name: str) -> None:

        def pre(mod, args):
            self._start[name] = self.clock()

        def post(mod, args, out):
            elapsed = self.clock() - self._start.pop(name)
            self.totals[name] = self.totals.get(name, 0.) + elapsed

        # A module compiled by nn.Module.compile runs its hooks inside the
        # compiled call: traced, the clock calls break the graph in the
        # middle and the stage ran 8x slower (measured on a conv stack);
        # excluded from tracing they run eagerly at its two ends.
        self.handles.append(
            module.register_forward_pre_hook(torch.compiler.disable(pre)))
        self.handles.append(
            module.register_forward_hook(torch.compiler.disable(post)))

    def reset(self) -> None:
        self.totals = {}


class Runner:
    """One timed model: a callable run on prepared data, and its stages."""

    def __init__(self, name: str, model: nn.Module, data: dict,
                 device: torch.device, task: str):
        self.name = name
        self.model = model
        self.data = data
        self.task = task
        self.clock = Clock(device)
        self.timer = StageTimer(self.clock)
        for stage in ('backbone', 'neck'):
            module = getattr(model, stage, None)
            if module is not None:
                self.timer.attach(module, stage)
        self.timer.attach(model.panoptic_head, 'head')
        self.times: Dict[str, List[float]] = {}
        self.last = None
        self.feats = None

    def run(self, record: bool = True):
        data = self.data
        self.timer.reset()
        with torch.inference_mode():
            start = self.clock()
            if self.task == 'prompt':
                feats = self.model.extract_feat(data['inputs'])
                mid = self.clock()
                out = self.model.predict_from_feats(feats,
                                                    data['data_samples'])
                end = self.clock()
                extra = dict(features=mid - start, decode=end - mid)
            else:
                out = self.model.predict(data['inputs'], data['data_samples'])
                end = self.clock()
                extra = {}
        self.last = out
        if not record:
            return
        stages = dict(self.timer.totals)
        stages['e2e'] = end - start
        stages['post'] = stages['e2e'] - sum(
            stages.get(s, 0.) for s in ('backbone', 'neck', 'head'))
        stages.update(extra)
        for key, value in stages.items():
            self.times.setdefault(key, []).append(value)

    def medians(self) -> Dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}

    def decode_only(self, repeats: int) -> List[float]:
        """Prompt decodes on features computed once (cached)."""
        with torch.inference_mode():
            feats = self.model.extract_feat(self.data['inputs'])
            times = []
            for _ in range(repeats + 1):
                start = self.clock()
                self.model.predict_from_feats(feats, self.data['data_samples'])
                times.append(self.clock() - start)
        return times[1:]


def time_interleaved(runners: Sequence['Runner'], warmup: int,
                     repeats: int) -> None:
    """``warmup`` untimed runs of each, then ``repeats`` rounds of one
    timed run of each."""
    for runner in runners:
        for _ in range(warmup):
            runner.run(record=False)
    for _ in range(repeats):
        for runner in runners:
            runner.run()


# ----------------------------------------------------------------------
# complexity and memory
# ----------------------------------------------------------------------
class _HeadForward(nn.Module):

    def __init__(self, head, samples):
        super().__init__()
        self.head = head
        self.samples = samples

    def forward(self, x):
        return self.head(x, self.samples)


def count_flops(model: nn.Module, inputs: torch.Tensor, samples) -> dict:
    """GFLOPs per stage from mmengine's FlopAnalyzer (which, as fvcore,
    counts one multiply-add as one flop; ops it has no handle for, e.g.
    mmcv's kernels and gathers, count zero)."""
    from mmengine.analysis import FlopAnalyzer

    def flops(module, args):
        analyzer = FlopAnalyzer(module, args)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return analyzer.total() / 1e9

    result = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        feats = model.backbone(inputs)
        result['backbone'] = flops(model.backbone, (inputs, ))
        if getattr(model, 'neck', None) is not None:
            result['neck'] = flops(model.neck, (tuple(feats), ))
            feats = model.neck(feats)
        result['head'] = flops(
            _HeadForward(model.panoptic_head, samples), (feats, ))
    result['total'] = sum(result.values())
    return result


def peak_memory_mb(runner: Runner, device: torch.device) -> Optional[float]:
    """Peak tensor memory of one predict beyond what was allocated before
    it: the CUDA allocator's peak on GPUs; on CPUs the running sum of the
    allocations and frees the torch profiler records, in time order (op
    granularity)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.run(record=False)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        runner.run(record=False)
    current = peak = 0
    for event in sorted(p.events(), key=lambda e: e.time_range.start):
        current += (
            event.cpu_memory_usage
            if event.name == '[memory]' else event.self_cpu_memory_usage)
        peak = max(peak, current)
    return peak / 2**20


# ----------------------------------------------------------------------
# agreement of a variant with another
# ----------------------------------------------------------------------
def compare_results(ours, reference) -> dict:
    """Agreement of predictions: panoptic pixels, instance labels / masks,
    prompt masks."""
    out = {}
    a, b = ours[0], reference[0]
    if 'pred_panoptic_seg' in b:
        pa, pb = a.pred_panoptic_seg.sem_seg, b.pred_panoptic_seg.sem_seg
        out['panoptic_pixel_agreement'] = (pa == pb).float().mean().item()
    if 'pred_instances' in b:
        ia, ib = a.pred_instances, b.pred_instances
        out['instances'] = [len(ia), len(ib)]
        if len(ia) == len(ib) and len(ib) > 0:
            out['instance_labels_equal'] = bool(
                torch.equal(ia.labels, ib.labels))
            out['instance_scores_max_abs_diff'] = (
                ia.scores - ib.scores).abs().max().item()
            ma, mb = ia.masks.bool(), ib.masks.bool()
            inter = (ma & mb).flatten(1).sum(1).float()
            union = (ma | mb).flatten(1).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), 1.)
            out['instance_mask_iou_min'] = iou.min().item()
            out['instance_mask_pixel_agreement'] = (
                ma == mb).float().mean().item()
    return out


def head_output_error(model, reference, data) -> dict:
    """Largest error of the head's class scores and mask logits relative
    to the reference's magnitudes (both fed the same preprocessed input)."""
    with torch.inference_mode():
        outs = []
        for m in (model, reference):
            inputs = data['inputs']
            feats = m.extract_feat(inputs)
            cls, masks, _, _ = m.predict_head(feats, data['data_samples'])
            outs.append((cls.float(), masks.float()))
    (ca, ma), (cb, mb) = outs
    return dict(
        class_logits_rel_err=((ca - cb).abs().max() /
                              cb.abs().max().clamp(min=1e-6)).item(),
        mask_logits_rel_err=((ma - mb).abs().max() /
                             mb.abs().max().clamp(min=1e-6)).item(),
        mask_sign_agreement=((ma > 0) == (mb > 0)).float().mean().item())


# ----------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator(trim_threshold: int = (1 << 31) - 1) -> bool:
    """Keep freed memory in the process (glibc only): no mmap'd blocks and
    no trimming below ``trim_threshold`` bytes. Large temporaries are then
    reused instead of page-faulted in anew for every forward pass, which on
    a VM costs as much as the arithmetic of an elementwise op. Returns
    whether glibc accepted the settings. Process-wide: it speeds up every
    model in the process alike."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1) and ok
    return ok


def machine_info(device: torch.device) -> dict:
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine())
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith('model name'):
                info['cpu'] = line.split(':', 1)[1].strip()
                break
        flags = set()
        for line in text.splitlines():
            if line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
                break
        info['cpu_cores'] = os.cpu_count()
        info['avx512'] = 'avx512f' in flags
        info['avx512_bf16'] = 'avx512_bf16' in flags
        info['amx_bf16'] = 'amx_bf16' in flags
    except OSError:
        pass
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def speedups(medians: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """Speed ratios from each variant's median stage times: every variant
    against ``reference`` end to end, and against ``mask2former`` end to
    end and over the network's forward (backbone, neck, head)."""
    ratios = {}
    if 'reference' in medians:
        for name, med in medians.items():
            if name not in ('reference', 'mask2former'):
                ratios[f'{name}_vs_reference_e2e'] = medians['reference'][
                    'e2e'] / med['e2e']
    if 'mask2former' in medians:
        m2f = medians['mask2former']
        m2f_fwd = m2f.get('backbone', 0) + m2f.get('head', 0)
        for name, med in medians.items():
            if name == 'mask2former':
                continue
            fwd = sum(med.get(s, 0.) for s in ('backbone', 'neck', 'head'))
            ratios[f'{name}_vs_mask2former_e2e'] = m2f['e2e'] / med['e2e']
            ratios[f'{name}_vs_mask2former_forward'] = m2f_fwd / fwd
    return ratios


def summarise(model: nn.Module, results) -> dict:
    """What the post-processing produced (it depends on the weights), for
    the first image (the last frame of a clip)."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    from mmdet.structures import TrackDataSample
    sample = results[0]
    if isinstance(sample, TrackDataSample):
        sample = sample[len(sample) - 1]
    out = {}
    if 'pred_panoptic_seg' in sample:
        ids = torch.unique(sample.pred_panoptic_seg.sem_seg)
        background = model.panoptic_fusion_head.num_classes
        out['panoptic_segments'] = int((ids % INSTANCE_OFFSET
                                        != background).sum())
    for key in ('pred_instances', 'pred_track_instances'):
        if key in sample:
            out['instances'] = len(sample.get(key))
    return out
