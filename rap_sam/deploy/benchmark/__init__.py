"""Measuring RAP-SAM's inference, as ``tools/analysis/benchmark.py`` does.

:class:`InferenceBenchmark` is one run (the variants asked for, timed in
the same rounds on the same input) and its report;
:func:`format_report` its printed form. The pieces it is made of, each
usable on its own:

- ``variants``: :func:`build_rap_sam` (a config, with a checkpoint's or
  seeded random weights), :func:`build_mask2former` (mmdet's own
  Mask2Former R50 panoptic, the comparison), :func:`variants` and
  :func:`skip_reason` (which (backend, precision, post-processing)
  variants a run times, and why the others cannot run here),
  :func:`build_variant` (through :func:`rap_sam.deploy.prepare`);
- ``runtime_exports``: :class:`RuntimeExports` (the export folders a
  run's ONNX Runtime and OpenVINO variants read: fp32, and int8
  calibrated on :func:`write_calibration_images`);
- ``inputs``: :func:`load_image`, :func:`image_data`, :func:`video_data`,
  :func:`click_boxes`, :func:`preprocess`;
- ``runners``: :class:`Runner` (one torch model's preprocessing and
  ``predict`` end to end and per stage through forward hooks),
  :class:`DeployedRunner` (an export folder on a runtime with the same
  torch post-processing, as :class:`rap_sam.apis.RapSAMPredictor` runs
  it), :func:`time_interleaved` (every runner once per round, so load on
  the machine falls on all alike), :func:`time_clicks` (clicks decoded on
  cached features);
- ``measures``: :func:`count_flops`, :func:`peak_memory_mb`,
  :func:`compare_results` and :func:`head_output_error` (any two runners,
  torch or runtime), :func:`speedups`, :func:`summarise`;
- ``machine``: :func:`machine_info`, :func:`load_average`,
  :func:`tune_cpu_allocator`;
- ``roofline``: :func:`measure_roofline` (the machine's matrix-multiply
  peak with the run's threads, per precision; :func:`best_of_rooflines`
  combines several) and :func:`roofline_bounds` (the network's floor at
  that peak, and the largest speed-up over Mask2Former it allows);
- ``post_modes``: :func:`time_post_modes` and :func:`post_agreement` (the
  exact post-processing against an approximate one).
"""
from .inference_benchmark import InferenceBenchmark
from .inputs import (DEMO_IMAGE, click_boxes, image_data, load_image,
                     preprocess, video_data)
from .machine import load_average, machine_info, tune_cpu_allocator
from .measures import (compare_results, count_flops, head_output_error,
                       peak_memory_mb, speedups, summarise)
from .post_modes import post_agreement, time_post_modes
from .report import format_report, format_table, roofline_lines
from .roofline import (best_of_rooflines, matmul_throughput, measure_roofline,
                       roofline_bounds)
from .runners import DeployedRunner, Runner, time_clicks, time_interleaved
from .runtime_exports import (CALIBRATION_PHOTOS, ExportFailed, RuntimeExports,
                              write_calibration_images)
from .variants import (BACKENDS, RUNTIMES, Variant, build_mask2former,
                       build_rap_sam, build_variant, skip_reason, variants)

__all__ = [
    'InferenceBenchmark', 'format_report', 'format_table', 'roofline_lines',
    'DEMO_IMAGE', 'click_boxes', 'image_data', 'load_image', 'preprocess',
    'video_data', 'load_average', 'machine_info', 'tune_cpu_allocator',
    'compare_results', 'count_flops', 'head_output_error', 'peak_memory_mb',
    'speedups', 'summarise', 'post_agreement', 'time_post_modes',
    'best_of_rooflines', 'matmul_throughput', 'measure_roofline',
    'roofline_bounds', 'DeployedRunner', 'Runner', 'time_clicks',
    'time_interleaved', 'CALIBRATION_PHOTOS', 'ExportFailed', 'RuntimeExports',
    'write_calibration_images', 'BACKENDS', 'RUNTIMES', 'Variant',
    'build_mask2former', 'build_rap_sam', 'build_variant', 'skip_reason',
    'variants'
]
