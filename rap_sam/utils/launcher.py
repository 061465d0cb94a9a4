import os

import torch
import torch.distributed as dist


def setup_cpu_distributed(cfg, launcher: str) -> None:
    """Let ``--launcher pytorch`` work on machines without a GPU.

    mmengine's ``init_dist`` always calls ``torch.cuda.set_device``, which a
    CPU build of torch cannot do. Without CUDA, the process group is created
    here with gloo (torchrun's environment variables say where), and the
    runner then finds it already initialised; DDP gets no device ids, as
    it wants for CPU modules.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))


def close_distributed() -> None:
    """Leave the process group together once a launched run has finished.

    A process that exits while the group is still alive tears gloo's threads
    down in whatever order the interpreter picks; on the process that hosts
    torchrun's store, while another node still talks to it, that ends in
    ``terminate called without an active exception`` (SIGABRT) after a run
    that succeeded. Waiting for every process, then destroying the group,
    lets each one exit cleanly.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
