import atexit
import os
import sys
import threading

import torch
import torch.distributed as dist

#: What each ``--launcher`` sets in the processes it starts (mmengine's
#: ``init_dist`` reads them); without a GPU the process group is made from
#: torchrun's (:func:`setup_cpu_distributed`).
LAUNCHER_VARIABLES = {
    'pytorch':
    ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK',
            'OMPI_COMM_WORLD_SIZE'),
}
CPU_LAUNCH_VARIABLES = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def check_launched(launcher: str, usage: str, error: type) -> None:
    """Raise ``error`` (one line naming what is missing and ``usage``, the
    launch script's command) where ``--launcher`` is other than none in a
    process its launcher did not start: the process-group setup would end
    in a KeyError traceback. Without CUDA, slurm and mpi are refused unless
    torchrun's variables are set too (:data:`CPU_LAUNCH_VARIABLES`)."""
    if launcher == 'none':
        return
    needed = LAUNCHER_VARIABLES[launcher]
    if not torch.cuda.is_available():
        # Without CUDA the process group is made from torchrun's variables
        # (setup_cpu_distributed), which slurm and mpi do not set: telling
        # their users to set torchrun's would be no advice.
        if launcher != 'pytorch' and not all(name in os.environ
                                             for name in CPU_LAUNCH_VARIABLES):
            raise error(
                f'--launcher {launcher} needs CUDA, and this machine has '
                f'none: CPU-only runs take --launcher pytorch, as {usage} '
                'starts them (torchrun), or leave --launcher out for one '
                'process.')
        needed += CPU_LAUNCH_VARIABLES
    missing = [
        name for name in dict.fromkeys(needed) if name not in os.environ
    ]
    if missing:
        raise error(
            f'--launcher {launcher} is for the processes a launcher starts '
            f'({", ".join(missing)} not set): run {usage} (torchrun), or '
            'leave --launcher out for one process.')


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


#: Whether close_distributed closed a process group in this process (after
#: destroy_process_group, torch.distributed no longer says there was one).
_group_closed = False


def close_distributed() -> None:
    """Leave the process group together once a launched run has finished:
    a process that exits first would leave the others' last collective,
    or the store it hosts, without a peer. The process then ends with
    :func:`exit_closed_process`."""
    global _group_closed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _group_closed = True


def exit_closed_process() -> None:
    """End a process whose process group :func:`close_distributed` closed,
    as the interpreter would (its other threads joined, its ``atexit``
    functions run, its output flushed) but without its finalization.

    destroy_process_group leaves gloo's worker threads running (the DDP
    wrapper still holds the group). A thread that finishes a collective
    drops its tensors afterwards; where Python had already let go of them,
    that needs the GIL, and a thread that asks for the GIL once the
    interpreter is finalizing ends itself inside a C++ destructor: a run
    that succeeded ends in ``terminate called without an active
    exception`` (SIGABRT), now and then, on a loaded machine. Nothing
    is left for the finalization to do that a finished run needs.
    Returns where no group was closed (one process, or main() in-process).
    """
    if not _group_closed:
        return
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    # What the interpreter runs first when it exits (logging's flush and
    # close of the log files, temporary folders' removal); multiprocessing
    # ends its children the same way.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream
            pass
    os._exit(0)
