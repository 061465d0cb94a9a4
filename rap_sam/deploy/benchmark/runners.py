"""Timing: one model (torch, or an export on a runtime) end to end and per
stage, every runner once per round, and clicks on cached features."""
import copy
import statistics
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .inputs import preprocess


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


def _stage_times(totals: Dict[str, float], start: float, pre: float,
                 end: float) -> Dict[str, float]:
    """Per-stage seconds of one run: ``pre`` (preprocessing), the stages
    timed in ``totals``, ``encoder`` (backbone and neck, or the encoder
    graph), ``post`` (the rest of the run: post-processing) and ``e2e``."""
    stages = dict(totals)
    stages['pre'] = pre - start
    stages['e2e'] = end - start
    if 'encoder' not in stages:
        stages['encoder'] = stages.get('backbone', 0.) + stages.get('neck', 0.)
    stages['post'] = stages['e2e'] - stages['pre'] - stages[
        'encoder'] - stages.get('head', 0.)
    return stages


def _click_parts(total: float, head: Optional[float]) -> Dict[str, float]:
    """A click's seconds, and its decoder and post-processing parts when
    the decoder was timed (a click with no prompt runs no head)."""
    if head is None:
        return dict(decode_cached=total)
    return dict(
        decode_cached=total,
        decode_cached_head=head,
        decode_cached_post=total - head)


class Runner:
    """One timed torch model: its data preprocessor and ``predict`` end to
    end, and its stages (forward hooks).

    Args:
        name (str): The variant's name.
        model (nn.Module): RAP-SAM (prepared) or Mask2Former.
        raw (dict): The unprocessed batch (:func:`image_data` ...); every
            run preprocesses a copy of it, timed.
        device (torch.device): Where the model is.
        task (str): ``'image'``, ``'prompt'`` (the samples carry clicks:
            ``features`` and ``decode`` are timed apart) or ``'video'``.
    """

    def __init__(self, name: str, model: nn.Module, raw: dict,
                 device: torch.device, task: str):
        self.name = name
        self.model = model
        self.raw = raw
        self.data = preprocess(model, raw, device)
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
        self._clicks = None

    def _batch(self) -> dict:
        # The preprocessor makes new tensors but writes into the samples
        # (and predict adds its results to them): fresh samples per run.
        return dict(
            inputs=list(self.raw['inputs']),
            data_samples=copy.deepcopy(self.raw['data_samples']))

    def run(self, record: bool = True):
        batch = self._batch()
        self.timer.reset()
        with torch.inference_mode():
            start = self.clock()
            data = self.model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            pre = self.clock()
            if self.task == 'prompt':
                feats = self.model.extract_feat(inputs)
                mid = self.clock()
                out = self.model.predict_from_feats(feats, samples)
                end = self.clock()
                extra = dict(features=mid - start, decode=end - mid)
            else:
                out = self.model.predict(inputs, samples)
                end = self.clock()
                extra = {}
        self.last = out
        if not record:
            return
        stages = _stage_times(self.timer.totals, start, pre, end)
        stages.update(extra)
        for key, value in stages.items():
            self.times.setdefault(key, []).append(value)

    def medians(self) -> Dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}

    def head_outputs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The head's class and mask logits (fp32) on the benchmark's
        input: what an export's decoder outputs."""
        with torch.inference_mode():
            feats = self.model.extract_feat(self.data['inputs'])
            cls, masks, _, _ = self.model.predict_head(
                feats, self.data['data_samples'])
        return cls.float(), masks.float()

    def set_clicks(self, boxes: Optional[torch.Tensor]) -> None:
        """Cache the image's features for :meth:`click`: decoding
        ``boxes`` (clicks as 6-px boxes at the input's scale), or the
        samples' own prompts (``--task prompt``) when None."""
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        samples = self.data['data_samples']
        if boxes is not None:
            sample = DetDataSample(metainfo=samples[0].metainfo)
            device = self.data['inputs'].device
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes.to(device),
                pb_labels=torch.ones(
                    len(boxes), dtype=torch.long, device=device))
            samples = [sample]
        with torch.inference_mode():
            self._clicks = (self.model.extract_feat(self.data['inputs']),
                            samples)

    def click(self) -> Dict[str, float]:
        """Seconds to decode the cached prompts on the cached features:
        ``decode_cached`` (the whole click), split into
        ``decode_cached_head`` (the head, timed by its forward hook) and
        ``decode_cached_post`` (the rest: post-processing)."""
        feats, samples = self._clicks
        self.timer.reset()
        with torch.inference_mode():
            start = self.clock()
            self.model.predict_from_feats(feats, samples)
            total = self.clock() - start
        return _click_parts(total, self.timer.totals.get('head'))


class DeployedRunner:
    """An export folder on a runtime, timed as
    :class:`rap_sam.apis.RapSAMPredictor` runs it: numpy / OpenCV
    preprocessing, the encoder and decoder graphs, and the torch model's
    own post-processing (:class:`RapSAMPostProcessor`, the same code as
    the torch variants').

    Args:
        name (str): The variant's name.
        model (DeployedModel): The export on its runtime.
        post (RapSAMPostProcessor): The post-processing.
        img (np.ndarray): The BGR uint8 image.
        task (str): ``'image'`` or ``'prompt'``.
        boxes (torch.Tensor, optional): ``--task prompt``: the prompts,
            ``[N, 4]`` at the input's scale.
    """

    def __init__(self,
                 name: str,
                 model,
                 post,
                 img: np.ndarray,
                 task: str,
                 boxes: Optional[torch.Tensor] = None):
        self.name = name
        self.model = model
        self.post = post
        self.img = img
        self.task = task
        self.boxes = boxes
        self.clock = Clock(torch.device('cpu'))
        self.times: Dict[str, List[float]] = {}
        self.last = None
        self._clicks = None

    def _sample(self, meta: dict, boxes: Optional[torch.Tensor] = None):
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        sample = DetDataSample(metainfo=dict(meta, img_id=0))
        if boxes is not None:
            sample.gt_instances_collected = InstanceData(
                point_coords=boxes,
                pb_labels=torch.ones(len(boxes), dtype=torch.long))
        return sample

    def _decode(self, feats, meta, boxes=None):
        """-> (head outputs as tensors, results); the decoder graph, then
        the post-processing."""
        sample = self._sample(meta, boxes)
        if boxes is None:
            cls, masks = self.model.decode_panoptic(feats)
            mid = self.clock()
            cls, masks = torch.from_numpy(cls), torch.from_numpy(masks)
            out = self.post.panoptic(cls, masks, [sample])
        else:
            cls, masks, iou = self.model.decode_prompts(
                feats, boxes.numpy(), meta)
            mid = self.clock()
            cls, masks = torch.from_numpy(cls), torch.from_numpy(masks)
            out = self.post.prompts(cls, masks, torch.from_numpy(iou),
                                    [sample])
        return mid, out

    def run(self, record: bool = True):
        boxes = self.boxes if self.task == 'prompt' else None
        with torch.inference_mode():
            start = self.clock()
            image, meta = self.model.preprocess(self.img)
            pre = self.clock()
            feats = self.model.encode(image)
            encoded = self.clock()
            decoded, out = self._decode(feats, meta, boxes)
            end = self.clock()
        self.last = out
        if not record:
            return
        stages = _stage_times(
            dict(encoder=encoded - pre, head=decoded - encoded), start, pre,
            end)
        if self.task == 'prompt':
            stages.update(features=encoded - start, decode=end - encoded)
        for key, value in stages.items():
            self.times.setdefault(key, []).append(value)

    medians = Runner.medians

    def head_outputs(self) -> Tuple[torch.Tensor, torch.Tensor]:
        image, meta = self.model.preprocess(self.img)
        feats = self.model.encode(image)
        if self.task == 'prompt':
            cls, masks, _ = self.model.decode_prompts(feats,
                                                      self.boxes.numpy(), meta)
        else:
            cls, masks = self.model.decode_panoptic(feats)
        return torch.from_numpy(cls), torch.from_numpy(masks)

    def set_clicks(self, boxes: Optional[torch.Tensor]) -> None:
        image, meta = self.model.preprocess(self.img)
        boxes = self.boxes if boxes is None else boxes
        self._clicks = (self.model.encode(image), meta, boxes)

    def click(self) -> Dict[str, float]:
        """As :meth:`Runner.click`: the decoder graph, then the
        post-processing."""
        feats, meta, boxes = self._clicks
        with torch.inference_mode():
            start = self.clock()
            mid, _ = self._decode(feats, meta, boxes)
            total = self.clock() - start
        return _click_parts(total, mid - start)


def time_interleaved(runners: Sequence[Union[Runner, DeployedRunner]],
                     warmup: int, repeats: int) -> None:
    """``warmup`` untimed runs of each, then ``repeats`` rounds of one
    timed run of each."""
    for runner in runners:
        for _ in range(warmup):
            runner.run(record=False)
    for _ in range(repeats):
        for runner in runners:
            runner.run()


#: Seconds between two timed clicks: a user's clicks are that far apart
#: at least, and the thread pools of the runner before (OpenMP's, ONNX
#: Runtime's) stop spinning on the cores meanwhile instead of slowing the
#: next runner's click (measured: 1-30 ms of CPU spun in the 50 ms after
#: a run).
CLICK_PAUSE_S = 0.05


def time_clicks(runners: Sequence[Union[Runner, DeployedRunner]],
                boxes: Optional[torch.Tensor],
                repeats: int,
                pause: float = CLICK_PAUSE_S) -> None:
    """Prompt decoding on cached features (SAM-style interactive use):
    per runner, features computed once, then one untimed decode and
    ``repeats`` interleaved rounds of one timed decode of ``boxes`` (the
    samples' own prompts when None), post-processing included, each
    ``pause`` seconds after the one before; the seconds go to
    ``runner.times['decode_cached']``, and its parts to
    ``'decode_cached_head'`` (the head or the decoder graph) and
    ``'decode_cached_post'`` (post-processing), which add up to it run by
    run."""
    for runner in runners:
        runner.set_clicks(boxes)
        runner.click()
    for _ in range(repeats):
        for runner in runners:
            time.sleep(pause)
            for key, value in runner.click().items():
                runner.times.setdefault(key, []).append(value)
