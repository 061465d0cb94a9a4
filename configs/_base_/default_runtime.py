from mmdet.engine.hooks import DetVisualizationHook
from mmengine.hooks import (DistSamplerSeedHook, IterTimerHook,
                            ParamSchedulerHook)
from mmengine.runner import LogProcessor, TestLoop, ValLoop
from mmengine.visualization import LocalVisBackend

from rap_sam.engine import AtomicCheckpointHook, MainProcessLoggerHook

# The configs name their classes directly; mmdet's scope is what mmdet's
# own tools (DetInferencer, init_detector, the Runner) expect.
default_scope = 'mmdet'

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=MainProcessLoggerHook, interval=50),
    param_scheduler=dict(type=ParamSchedulerHook),
    # Written atomically, the previous one kept until the new one is
    # complete: a kill at any moment leaves a checkpoint to --resume from.
    checkpoint=dict(type=AtomicCheckpointHook, interval=1),
    sampler_seed=dict(type=DistSamplerSeedHook),
    visualization=dict(type=DetVisualizationHook))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type=LocalVisBackend)]
# mmdet's DetLocalVisualizer with display names (rap_sam/visualization); by
# name, as the Runner prints its config.
visualizer = dict(
    type='mmdet.RapSAMLocalVisualizer',
    vis_backends=vis_backends,
    name='visualizer')
log_processor = dict(type=LogProcessor, window_size=50, by_epoch=True)

val_cfg = dict(type=ValLoop)
test_cfg = dict(type=TestLoop)

log_level = 'INFO'
load_from = None
resume = False
