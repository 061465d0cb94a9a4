"""One benchmark run of RAP-SAM's inference, as
``tools/analysis/benchmark.py`` makes it: the variants asked for (torch
inference settings, exports on runtimes, mmdet's Mask2Former) timed in the
same rounds on the same input, and a JSON-ready report of it.

Its printed form is :func:`~rap_sam.deploy.benchmark.report.format_report`.
"""
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from rap_sam.apis.inputs import check_device
from rap_sam.utils.user_errors import UserError
from ..backends import reads_int8_folder
from ..quantize import DEFAULT_CALIBRATION
from .inputs import click_boxes, image_data, load_image, preprocess, video_data
from .machine import load_average, machine_info, tune_cpu_allocator
from .measures import (compare_results, count_flops, head_output_error,
                       peak_memory_mb, speedups, summarise)
from .roofline import best_of_rooflines, measure_roofline, roofline_bounds
from .runners import DeployedRunner, Runner, time_clicks, time_interleaved
from .runtime_exports import ExportFailed, RuntimeExports
from .variants import (build_mask2former, build_rap_sam, build_variant,
                       skip_reason)
from .variants import variants as run_variants

TASKS = ('image', 'video', 'prompt')

#: Fewest timed clicks per variant: a click takes milliseconds, and five
#: of them (the CPU's default rounds) gave medians 20% apart run to run.
MIN_CLICK_REPEATS = 20


class InferenceBenchmark:
    """RAP-SAM's variants (and Mask2Former) timed end to end and per stage.

    Args:
        config (str): RAP-SAM config file.
        checkpoint (str, optional): Weights; seeded random ones if omitted.
        task (str): ``'image'``, ``'prompt'`` (``num_prompts`` clicks per
            image) or ``'video'`` (a clip of ``num_frames`` frames).
        shape (tuple): Input ``(h, w)``.
        device (str): Where the torch models run (an unknown device, or one
            this process cannot use, is an ``InputError``).
        threads (int, optional): torch's CPU threads during :meth:`run`
            (and the runtimes'); default torch's.
        variants (sequence): Torch inference modes timed in fp32,
            ``'reference'`` and / or ``'fast'``.
        backends (sequence): ``'torch'``, ``'onnxruntime'``,
            ``'openvino'``.
        precisions (sequence): ``'fp32'``, ``'bf16'``, ``'fp16'``,
            ``'int8'``, ``'int8-bf16'``; what cannot run here is reported as
            skipped, with the reason.
        posts (sequence): Post-processings of the fast and runtime variants,
            ``'exact'`` and / or ``'half'``.
        compile (bool): Also time ``fast`` through ``torch.compile``.
        compare (str, optional): ``'mask2former'``: mmdet's Mask2Former R50
            panoptic in the same rounds (task ``'image'``).
        calib_dir (str, optional): int8 calibration images.
        calibration (str): int8 activation ranges, ``'minmax'`` or
            ``'percentile'``.
        int8_weight_bits (int): int8 weights' bits, 8 or 7.
        warmup (int, optional): Untimed runs per variant (1 on CPUs, 5 on
            GPUs).
        repeats (int, optional): Timed rounds (5 on CPUs, 30 on GPUs).
        clicks (bool): Task ``'image'``: also time a click on cached
            features.
        click_repeats (int, optional): Timed clicks per variant (default
            ``repeats``, at least :data:`MIN_CLICK_REPEATS`).
        tune_malloc (bool): Keep freed memory in the process (glibc), for
            every model of the run (the default). Without it Mask2Former's
            post-processing, which allocates 430 MB per image at 800x1344,
            took 0.6-6 s on one VM depending on how fast the machine faulted
            fresh memory in that minute, so its ratios swung 2x run to run.
        flops, memory, roofline (bool): Count GFLOPs; measure peak memory;
            measure the machine's matrix-multiply peak and the floor it
            sets.
        accuracy (bool): Compare every variant's outputs with the torch
            fp32 one (always done for runtime variants).
        image (str, optional): Image file (default demo/demo.jpg, or
            seeded noise).
        seed (int): Seed of the random weights and noise.
        cfg_options (dict, optional): Config overrides
            (``Config.merge_from_dict``'s form).
        command (str, optional): The command line, kept in the report.
    """

    def __init__(self,
                 config: str,
                 checkpoint: Optional[str] = None,
                 *,
                 task: str = 'image',
                 shape: Tuple[int, int] = (800, 1333),
                 device: str = 'cpu',
                 threads: Optional[int] = None,
                 variants: Sequence[str] = ('reference', 'fast'),
                 backends: Sequence[str] = ('torch', ),
                 precisions: Sequence[str] = ('fp32', ),
                 posts: Sequence[str] = ('exact', ),
                 compile: bool = False,
                 compare: Optional[str] = None,
                 calib_dir: Optional[str] = None,
                 calibration: str = DEFAULT_CALIBRATION,
                 int8_weight_bits: int = 8,
                 warmup: Optional[int] = None,
                 repeats: Optional[int] = None,
                 num_prompts: int = 1,
                 num_frames: int = 5,
                 clicks: bool = True,
                 click_repeats: Optional[int] = None,
                 tune_malloc: bool = True,
                 flops: bool = True,
                 memory: bool = True,
                 roofline: bool = True,
                 accuracy: bool = False,
                 image: Optional[str] = None,
                 seed: int = 0,
                 cfg_options: Optional[dict] = None,
                 command: Optional[str] = None):
        if task not in TASKS:
            raise ValueError(f'task must be one of {", ".join(TASKS)}, '
                             f'got {task!r}')
        if compare not in (None, 'mask2former'):
            raise ValueError(f"compare must be 'mask2former' or None, got "
                             f'{compare!r}')
        if compare and task != 'image':
            raise ValueError('compare=mask2former needs task=image')
        if min(shape) < 32:
            raise ValueError(f'shape must be at least 32x32, got {shape}')
        self.config, self.checkpoint = config, checkpoint
        self.task, self.shape = task, tuple(shape)
        self.device = check_device(device)
        self.threads = threads
        on_gpu = self.device.type == 'cuda'
        self.warmup = (5 if on_gpu else 1) if warmup is None else warmup
        self.repeats = (30 if on_gpu else 5) if repeats is None else repeats
        self.variants = run_variants(variants, precisions, compile, backends,
                                     posts)
        self.compare = compare
        self.calib_dir, self.calibration = calib_dir, calibration
        self.int8_weight_bits = int8_weight_bits
        self.num_prompts, self.num_frames = num_prompts, num_frames
        self.click_repeats = (
            max(self.repeats, MIN_CLICK_REPEATS)
            if click_repeats is None else click_repeats)
        if self.click_repeats < 1:
            raise ValueError('click_repeats must be at least 1, got '
                             f'{click_repeats}')
        self.clicks, self.tune_malloc = clicks, tune_malloc
        self.flops, self.memory = flops, memory
        self.roofline, self.accuracy = roofline, accuracy
        self.image, self.seed = image, seed
        self.cfg_options, self.command = cfg_options, command
        self.precisions = tuple(precisions)

    def run(self) -> dict:
        """Build, time and compare; the report (JSON-ready).

        Raises:
            UserError: Every variant asked for is skipped here.
        """
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with tempfile.TemporaryDirectory(prefix='rap_sam_bench_') as work:
                return self._run(work)
        finally:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------
    def _run(self, work_dir: str) -> dict:
        notes: List[str] = []
        if self.tune_malloc:
            ok = tune_cpu_allocator()
            notes.append('glibc allocator tuned (no mmap, no trim): '
                         f'{"accepted" if ok else "refused"}')
        base = build_rap_sam(self.config, self.checkpoint, self.seed, notes,
                             self.cfg_options).to(self.device)
        img = load_image(self.shape, self.image, self.seed)
        machine = machine_info(self.device)
        runners, skipped, models, raw = self._build_runners(
            base, img, machine, notes, work_dir)
        if not runners:
            raise UserError('Nothing to time: every variant asked for is '
                            'skipped here (' +
                            '; '.join(f'{k}: {v}'
                                      for k, v in skipped.items()) + ').')
        timing = self._time(runners, machine, notes)
        rap_sam_data = preprocess(base, raw, self.device)
        report = dict(
            config=self.config,
            checkpoint=self.checkpoint,
            task=self.task,
            shape=list(self.shape),
            padded_shape=list(rap_sam_data['inputs'].shape[-2:]),
            device=str(self.device),
            warmup=self.warmup,
            repeats=self.repeats,
            click_repeats=(self.click_repeats
                           if self._times_clicks() else None),
            tuned_malloc=self.tune_malloc,
            machine=machine,
            load_average_before=timing['load_before'],
            load_average_after=timing['load_after'],
            command=self.command,
            notes=notes,
            skipped=skipped,
            variants={})
        precisions = {
            v.name: v.precision
            for v in self.variants if v.name in runners
        }
        flops = self._describe(report, runners, models, precisions, base,
                               rap_sam_data)
        report['speedup'] = speedups({
            name: e['median_s']
            for name, e in report['variants'].items()
        })
        for name, entry in report['variants'].items():
            ratio = report['speedup'].get(f'{name}_vs_mask2former_e2e')
            if ratio is not None:
                entry['vs_mask2former'] = ratio
        if timing['peak'] is not None:
            gmac = (flops.get('rap_sam') or {}).get('total')
            report['roofline'] = roofline_bounds(
                timing['peak'], gmac, precisions, {
                    n: e['median_s']
                    for n, e in report['variants'].items()
                })
        self._agreement(report, runners)
        return report

    def _build_runners(self, base, img, machine: dict, notes: List[str],
                       work_dir: str):
        """The runners of this run (torch variants, runtime variants, then
        Mask2Former), the variants skipped (name: reason), each runner's
        model (for parameters, FLOPs and result summaries) and the
        unprocessed batch."""
        from ..backends import DeployedModel
        from ..backends.post_processor import RapSAMPostProcessor
        from ..prepare import use_post

        boxes = None
        if self.task == 'image':
            raw = image_data(img)
        elif self.task == 'prompt':
            boxes = click_boxes(*self.shape, self.num_prompts)
            raw = image_data(img, boxes)
        else:
            raw = video_data(img, self.num_frames)

        runners, skipped, models, posts = {}, {}, {}, {}
        exports = RuntimeExports(base, self.shape, work_dir, notes,
                                 self.calib_dir, self.calibration,
                                 self.int8_weight_bits)
        for variant in self.variants:
            reason = skip_reason(variant, self.device, self.task, machine)
            if reason:
                skipped[variant.name] = reason
                continue
            if variant.backend == 'torch':
                model = build_variant(base, variant)
                models[variant.name] = model
                runners[variant.name] = Runner(variant.name, model, raw,
                                               self.device, self.task)
                continue
            try:
                folder = exports.folder(variant.precision)
            except ExportFailed as err:
                skipped[variant.name] = str(err)
                continue
            if variant.post not in posts:
                posts[variant.post] = use_post(
                    RapSAMPostProcessor.from_model(base), variant.post)
            deployed = DeployedModel(folder, variant.backend,
                                     variant.precision, self.threads)
            models[variant.name] = posts[variant.post]
            runners[variant.name] = DeployedRunner(variant.name, deployed,
                                                   posts[variant.post], img,
                                                   self.task, boxes)
        if self.compare == 'mask2former':
            model = build_mask2former(self.seed).to(self.device)
            models['mask2former'] = model
            runners['mask2former'] = Runner('mask2former', model, raw,
                                            self.device, self.task)
        for key, seconds in exports.seconds.items():
            notes.append(f'{key} export made in {seconds:.1f} s (not timed)')
        return runners, skipped, models, raw

    def _times_clicks(self) -> bool:
        """Whether the run times clicks on cached features: always for
        the prompt task, for images unless ``clicks`` is off, never for
        videos."""
        return self.task == 'prompt' or (self.task == 'image' and self.clicks)

    def _time(self, runners: dict, machine: dict, notes: List[str]) -> dict:
        """The timed rounds (and clicks), between two measurements of the
        machine's peak and load."""
        rap_sam = [r for n, r in runners.items() if n != 'mask2former']
        # The peak before and after the timed rounds, the best of both: one
        # moment of load would lower it and raise the floor.
        peaks = []
        if self.roofline:
            peaks.append(measure_roofline(self.device, self.precisions))
        load_before = load_average()
        time_interleaved(list(runners.values()), self.warmup, self.repeats)
        if self._times_clicks():
            # --task prompt: the samples' own clicks; image: one click.
            boxes = (None if self.task == 'prompt' else click_boxes(
                *self.shape, 1))
            time_clicks(rap_sam, boxes, self.click_repeats)
        load_after = load_average()
        peak = None
        if peaks:
            peaks.append(measure_roofline(self.device, self.precisions))
            peak = best_of_rooflines(peaks)
        cores = machine.get('cpu_cores') or 0
        busiest = max((load_before or [0])[0], (load_after or [0])[0])
        if cores and busiest > cores:
            # Fine-grained parallel work (post-processing: many small ops)
            # suffers most when its threads are descheduled at each barrier.
            notes.append(f'the machine was busy (load average {busiest:.1f} '
                         f'on {cores} cores): times are inflated unevenly, '
                         'compare ratios within a run and rerun when it is '
                         'idle')
        return dict(load_before=load_before, load_after=load_after, peak=peak)

    def _describe(self, report: dict, runners: dict, models: dict,
                  precisions: Dict[str,
                                   str], base, rap_sam_data: dict) -> dict:
        """Each runner's entry: medians and samples, FPS, parameters,
        GFLOPs, peak memory, a summary of its results; the FLOP counts."""
        flops = {}
        base_params = round(sum(p.numel() for p in base.parameters()) / 1e6, 3)
        frames = self.num_frames if self.task == 'video' else 1
        for name, runner in runners.items():
            med = runner.medians()
            entry = dict(median_s=med, samples_s=runner.times)
            if isinstance(runner, Runner):
                entry['params_m'] = round(
                    sum(p.numel() for p in models[name].parameters()) / 1e6, 3)
            else:
                # The weights exported (BN folded), counted on the model.
                entry['params_m'] = base_params
            entry['fps'] = frames / med['e2e']
            if reads_int8_folder(precisions.get(name, '')):
                entry['calibration'] = self.calibration
            if self.flops:
                kind = 'mask2former' if name == 'mask2former' else 'rap_sam'
                if kind not in flops:
                    flops[kind] = self._count_flops(
                        kind, models[name] if kind == 'mask2former' else base,
                        runner.data if kind == 'mask2former' else rap_sam_data,
                        report['notes'])
                if flops[kind]:
                    entry['gflops'] = flops[kind]
                    entry['gflops_total'] = flops[kind]['total']
            if self.memory:
                entry['peak_memory_mb'] = peak_memory_mb(runner, self.device)
            entry['outputs'] = summarise(models[name], runner.last)
            report['variants'][name] = entry
        if self.memory and any(not isinstance(r, Runner)
                               for r in runners.values()):
            report['notes'].append(
                'peak memory of runtime variants not measured (the torch '
                'profiler does not see their allocations)')
        return flops

    @staticmethod
    def _count_flops(kind: str, model, data: dict,
                     notes: List[str]) -> Optional[dict]:
        # Counted on the model as built (prepare and export do not change
        # the arithmetic the counter sees).
        inputs = data['inputs']
        if inputs.dim() == 5:
            inputs = inputs.flatten(0, 1)
        try:
            return count_flops(model, inputs, data['data_samples'])
        except Exception as e:  # noqa: BLE001
            notes.append(f'GFLOPs of {kind} not counted: {e!r}')
            return None

    def _agreement(self, report: dict, runners: dict) -> None:
        """Each variant's results against the torch fp32 one's (reference
        if timed, else fast): every runtime variant, and with ``accuracy``
        every other variant too."""
        baseline = next((n for n in ('reference', 'fast') if n in runners),
                        None)
        runtimes = [n for n, r in runners.items() if not isinstance(r, Runner)]
        if baseline and (self.accuracy or runtimes):
            ref = runners[baseline]
            compared = [
                n for n in runners if n not in (baseline, 'mask2former') and (
                    self.accuracy or n in runtimes)
            ]
            report['agreement'] = dict(
                baseline=baseline,
                variants={
                    name:
                    dict(
                        compare_results(runners[name].last, ref.last),
                        **head_output_error(runners[name], ref))
                    for name in compared
                })
        elif runtimes:
            report['notes'].append(
                'agreement not measured: time the torch fp32 model too '
                '(--backend torch, --variants fast)')
