#!/usr/bin/env python
"""Speed of RAP-SAM, measured the way a reviewer would.

Every variant runs in the same process on the same preprocessed input,
interleaved (one run of each variant per round) so that load on the machine
falls on all of them alike; the figures are medians over the rounds after a
warm-up. Times are end to end through ``model.predict`` (network and
post-processing; the data preprocessor is not timed), and per stage through
forward hooks: ``backbone``, ``neck``, ``head`` (the decoder) and ``post``
(everything else in ``predict``: mask upsampling and panoptic / instance
fusion).

Variants of RAP-SAM (``--variants``):

- ``reference``: the model as the reference code runs it: mmcv's
  deformable-conv kernel (scalar and single-threaded on CPUs), BatchNorms as
  layers, NCHW, and every mask upsampled to full size before mmdet's
  ``MaskFormerFusionHead``.
- ``fast``: the model as built here (gather + GEMM deformable conv on CPUs,
  post-processing that upsamples only the masks it needs) with the exact
  inference optimisations: BN folded into convs, channels-last.
- ``fast-bf16``, ``fast-fp16`` (``--dtype``): ``fast`` under autocast, an
  approximate mode; ``--accuracy`` reports how far its outputs move.
- ``fast-compile`` (``--compile``): ``fast`` with backbone and neck through
  ``torch.compile``.

``--compare mask2former`` adds mmdet's own Mask2Former R50 panoptic model
(built from the config file shipped with mmdet, random weights) to the same
rounds and prints the speed ratios.

Examples::

    # CPU, the issue's setting (2 threads, 800x1344, random weights)
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --shape 800 1344 --threads 2 --compare mask2former --out bench.json
    # prompt decode after cached features
    python tools/analysis/benchmark.py \\
        configs/rap_sam/eval_rap_sam_prompt.py --task prompt --shape 800 1344
    # GPU, the paper's protocol (batch 1, 800x1333), fp32 and fp16
    python tools/analysis/benchmark.py configs/rap_sam/eval_rap_sam_coco.py \\
        --device cuda --dtype fp32 fp16 --compare mask2former
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

STAGES = ('backbone', 'neck', 'head', 'post', 'e2e')
MASK2FORMER_CONFIG = (
    'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark RAP-SAM (and mmdet Mask2Former) inference',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('Examples::')[-1])
    parser.add_argument('config', help='RAP-SAM config file')
    parser.add_argument('--checkpoint', help='weights (random if omitted)')
    parser.add_argument(
        '--task', choices=('image', 'video', 'prompt'), default='image')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(800, 1333),
        metavar=('H', 'W'),
        help='input image size (default: 800 1333)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='CPU threads (default: torch default)')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=['reference', 'fast'],
        choices=('reference', 'fast'),
        help='RAP-SAM variants timed (fp32)')
    parser.add_argument(
        '--dtype',
        nargs='+',
        default=['fp32'],
        choices=('fp32', 'bf16', 'fp16'),
        help='precisions of the fast variant (bf16 / fp16 = autocast)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='also time the fast variant with torch.compile')
    parser.add_argument(
        '--compare',
        choices=('mask2former', ),
        default=None,
        help="time mmdet's Mask2Former R50 panoptic in the same rounds")
    parser.add_argument(
        '--warmup',
        type=int,
        default=None,
        help='untimed runs per variant (default 1 CPU, '
        '5 GPU)')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed rounds (default 5 CPU, 30 GPU)')
    parser.add_argument(
        '--num-prompts',
        type=int,
        default=1,
        help='clicks per image for --task prompt')
    parser.add_argument(
        '--num-frames', type=int, default=5, help='frames for --task video')
    parser.add_argument(
        '--tune-malloc',
        action='store_true',
        help='keep freed memory in the process (glibc mallopt); applies '
        'to every model of the run')
    parser.add_argument(
        '--no-flops', action='store_true', help='skip the GFLOPs count')
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the peak-memory run')
    parser.add_argument(
        '--accuracy',
        action='store_true',
        help='compare every variant\'s outputs with the reference\'s')
    parser.add_argument(
        '--image', help='image file (default: demo/demo.jpg, '
        'or noise)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the report as JSON here')
    return parser.parse_args(argv)


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


def build_rap_sam(args, notes: List[str]) -> nn.Module:
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import rap_sam  # noqa: F401
    from rap_sam.utils.class_embeddings import class_embedding_path

    cfg = Config.fromfile(args.config)
    cfg.model.backbone.init_cfg = None
    head = cfg.model.panoptic_head
    name = head.get('ov_classifier_name')
    if name and not osp.isfile(
            class_embedding_path(name, head.get('ov_classifier_dir'))):
        notes.append(f'class embeddings {name}.pth not found: random '
                     'class embeddings (timing does not depend on them)')
        head.ov_classifier_name = None
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(
            model, args.checkpoint, map_location='cpu', strict=True)
    else:
        randomize_(model, args.seed)
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


def reference_variant(model: nn.Module) -> nn.Module:
    from rap_sam.deploy import prepare
    return prepare(copy.deepcopy(model), 'reference')


def fast_variant(model: nn.Module,
                 dtype: str = 'fp32',
                 compile: bool = False) -> nn.Module:
    from rap_sam.deploy import prepare
    return prepare(copy.deepcopy(model), 'fast', dtype, compile)


# ----------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------
def load_image(args) -> np.ndarray:
    """A BGR uint8 image of ``--shape``."""
    import cv2
    h, w = args.shape
    path = args.image or osp.join(
        osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'demo',
        'demo.jpg')
    img = cv2.imread(path) if osp.isfile(path) else None
    if img is None:
        rng = np.random.default_rng(args.seed)
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

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

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
# accuracy of a variant against another
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


# ----------------------------------------------------------------------
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator(trim_threshold: int = (1 << 31) - 1) -> bool:
    import ctypes
    import ctypes.util
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


def format_table(report: dict) -> str:
    names = list(report['variants'])
    keys = ['backbone', 'neck', 'head', 'post', 'e2e']
    if report['task'] == 'prompt':
        keys += ['features', 'decode', 'decode_cached']
    width = max(12, *(len(n) + 2 for n in names))
    lines = [
        'stage (median s)'.ljust(18) + ''.join(n.rjust(width) for n in names)
    ]
    for key in keys:
        row = key.ljust(18)
        for name in names:
            value = report['variants'][name]['median_s'].get(key)
            row += ('-' if value is None else f'{value:.4f}').rjust(width)
        lines.append(row)
    for label, field in (('FPS', 'fps'), ('params (M)', 'params_m'),
                         ('GFLOPs', 'gflops_total'), ('peak mem (MiB)',
                                                      'peak_memory_mb')):
        row = label.ljust(18)
        for name in names:
            value = report['variants'][name].get(field)
            row += ('-' if value is None else (f'{value:.2f}' if isinstance(
                value, float) else str(value))).rjust(width)
        lines.append(row)
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        return _main(args, argv)
    finally:
        torch.set_num_threads(threads)


def _main(args, argv) -> dict:
    device = torch.device(args.device)
    if args.warmup is None:
        args.warmup = 5 if device.type == 'cuda' else 1
    if args.repeats is None:
        args.repeats = 30 if device.type == 'cuda' else 5
    notes: List[str] = []
    if args.tune_malloc:
        ok = tune_cpu_allocator()
        notes.append('glibc allocator tuned (no mmap, no trim): '
                     f'{"accepted" if ok else "refused"}')
    if args.compare and args.task != 'image':
        raise SystemExit('--compare mask2former needs --task image')

    base = build_rap_sam(args, notes).to(device)
    img = load_image(args)
    if args.task == 'image':
        raw = image_data(img)
    elif args.task == 'prompt':
        raw = image_data(img, click_boxes(*args.shape, args.num_prompts))
    else:
        raw = video_data(img, args.num_frames)

    models = {}
    if 'reference' in args.variants:
        models['reference'] = reference_variant(base)
    for dtype in args.dtype:
        if 'fast' in args.variants or dtype != 'fp32':
            name = 'fast' if dtype == 'fp32' else f'fast-{dtype}'
            models[name] = fast_variant(base, dtype)
    if args.compile:
        models['fast-compile'] = fast_variant(base, 'fp32', compile=True)
    if args.compare == 'mask2former':
        models['mask2former'] = build_mask2former(args.seed).to(device)

    runners = {}
    for name, model in models.items():
        data = preprocess(model, raw, device)
        runners[name] = Runner(name, model, data, device, args.task)

    load_before = load_average()
    for runner in runners.values():
        for _ in range(args.warmup):
            runner.run(record=False)
    for _ in range(args.repeats):
        for runner in runners.values():
            runner.run()
    load_after = load_average()

    report = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        task=args.task,
        shape=list(args.shape),
        padded_shape=list(runners[next(
            iter(runners))].data['inputs'].shape[-2:]),
        device=str(device),
        warmup=args.warmup,
        repeats=args.repeats,
        machine=machine_info(device),
        load_average_before=load_before,
        load_average_after=load_after,
        command=' '.join([osp.basename(sys.argv[0])] +
                         (argv if argv is not None else sys.argv[1:])),
        notes=notes,
        variants={})

    flops_cache = {}
    for name, runner in runners.items():
        med = runner.medians()
        entry = dict(
            median_s=med,
            samples_s=runner.times,
            params_m=round(
                sum(p.numel() for p in models[name].parameters()) / 1e6, 3))
        if args.task == 'prompt':
            decodes = runner.decode_only(args.repeats)
            med['decode_cached'] = statistics.median(decodes)
            entry['samples_s']['decode_cached'] = decodes
        frames = args.num_frames if args.task == 'video' else 1
        entry['fps'] = frames / med['e2e']
        if not args.no_flops:
            kind = 'mask2former' if name == 'mask2former' else 'rap_sam'
            if kind not in flops_cache:
                flops_model = models['mask2former'] if kind == \
                    'mask2former' else base
                data = runner.data
                inputs = data['inputs']
                if inputs.dim() == 5:
                    inputs = inputs.flatten(0, 1)
                try:
                    flops_cache[kind] = count_flops(flops_model, inputs,
                                                    data['data_samples'])
                except Exception as e:  # noqa: BLE001
                    flops_cache[kind] = None
                    notes.append(f'GFLOPs of {kind} not counted: {e!r}')
            if flops_cache[kind]:
                entry['gflops'] = flops_cache[kind]
                entry['gflops_total'] = flops_cache[kind]['total']
        if not args.no_memory:
            entry['peak_memory_mb'] = peak_memory_mb(runner, device)
        entry['outputs'] = summarise(models[name], runner.last)
        report['variants'][name] = entry

    ratios = {}
    variants = report['variants']
    if 'reference' in variants:
        for name in variants:
            if name not in ('reference', 'mask2former'):
                ratios[f'{name}_vs_reference_e2e'] = variants['reference'][
                    'median_s']['e2e'] / variants[name]['median_s']['e2e']
    if 'mask2former' in variants:
        m2f = variants['mask2former']['median_s']
        m2f_fwd = m2f.get('backbone', 0) + m2f.get('head', 0)
        for name in variants:
            if name == 'mask2former':
                continue
            med = variants[name]['median_s']
            fwd = sum(med.get(s, 0.) for s in ('backbone', 'neck', 'head'))
            ratios[f'{name}_vs_mask2former_e2e'] = m2f['e2e'] / med['e2e']
            ratios[f'{name}_vs_mask2former_forward'] = m2f_fwd / fwd
    report['speedup'] = ratios

    if args.accuracy and 'reference' in runners:
        acc = {}
        ref = runners['reference']
        for name, runner in runners.items():
            if name in ('reference', 'mask2former'):
                continue
            acc[name] = compare_results(runner.last, ref.last)
            acc[name].update(
                head_output_error(runner.model, ref.model, ref.data))
        report['accuracy_vs_reference'] = acc

    print(f'RAP-SAM benchmark: task={args.task} input={args.shape[0]}x'
          f'{args.shape[1]} (padded {report["padded_shape"][0]}x'
          f'{report["padded_shape"][1]}) device={device} '
          f'threads={torch.get_num_threads()} warmup={args.warmup} '
          f'repeats={args.repeats}')
    print(f'machine: {report["machine"].get("cpu")} '
          f'{report["machine"].get("gpu", "")}; load average before '
          f'{load_before}, after {load_after}')
    for note in notes:
        print(f'note: {note}')
    print(format_table(report))
    for key, value in ratios.items():
        print(f'speedup {key}: {value:.2f}x')
    if 'accuracy_vs_reference' in report:
        for name, acc in report['accuracy_vs_reference'].items():
            print(f'accuracy {name} vs reference: '
                  f'{json.dumps(acc, sort_keys=True)}')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2, default=str)
        print(f'report written to {args.out}')
    return report


def head_output_error(model, reference, data) -> dict:
    """Largest error of the head's class scores and mask logits relative
    to the reference's magnitudes (both fed the same preprocessed input)."""
    with torch.inference_mode():
        outs = []
        for m in (model, reference):
            inputs = data['inputs']
            feats = m.extract_feat(inputs)
            cls, masks, _, _ = m.panoptic_head.predict(feats,
                                                       data['data_samples'])
            outs.append((cls.float(), masks.float()))
    (ca, ma), (cb, mb) = outs
    return dict(
        class_logits_rel_err=((ca - cb).abs().max() /
                              cb.abs().max().clamp(min=1e-6)).item(),
        mask_logits_rel_err=((ma - mb).abs().max() /
                             mb.abs().max().clamp(min=1e-6)).item(),
        mask_sign_agreement=((ma > 0) == (mb > 0)).float().mean().item())


if __name__ == '__main__':
    main()
