"""Chunks of masks processed by a few Python threads, one core each.

The fusion head's work is a series of memory-bound passes over full-size
masks (resize, sigmoid, threshold, sums), a few masks at a time. Each pass
split across PyTorch's intra-op threads is a fork-join of the OpenMP pool
per operation, which on a loaded machine costs more than the pass (a
thread that misses the barrier stalls all of them). Giving each thread
whole chunks instead, every operation single-threaded, keeps the cores
busy without a barrier per operation: the same operations on the same
values, so the same results (row sums, resizes and element-wise passes do
not depend on the thread count).
"""
import itertools
import threading
from typing import Callable, List, Optional, Sequence

import torch

#: Workers at most: each holds its own full-size scratch tensors, so many
#: cores share them as a few workers of several threads each.
MAX_CHUNK_WORKERS = 4
#: The scratch memory the workers after the first may add together: on a
#: large photo (12 MP: about 0.6 GB a worker) the chunks stay on one.
EXTRA_WORKERS_BYTES = 256 * 2**20


def num_chunk_workers(device: torch.device,
                      num_chunks: int,
                      bytes_per_worker: int = 0) -> int:
    """How many threads :func:`run_chunks` uses: one per intra-op thread on
    a CPU, at most :data:`MAX_CHUNK_WORKERS`, the number of chunks and
    what :data:`EXTRA_WORKERS_BYTES` allows for workers of
    ``bytes_per_worker`` scratch each; one (the caller) on other devices,
    whose kernels run asynchronously anyway."""
    if torch.device(device).type != 'cpu':
        return 1
    by_memory = 1 + EXTRA_WORKERS_BYTES // max(bytes_per_worker, 1)
    return max(
        1,
        min(torch.get_num_threads(), num_chunks, MAX_CHUNK_WORKERS, by_memory))


def run_chunks(chunks: Sequence,
               work: Callable[[object, dict], None],
               device: torch.device,
               workers: Optional[int] = None,
               bytes_per_worker: int = 0) -> None:
    """Call ``work(chunk, buffers)`` for every chunk, in no set order.

    With one worker the chunks run in the caller, in order. With ``n``
    more, each worker takes the next chunk not yet taken, on a thread of
    its own whose PyTorch operations run on ``threads // n`` threads (one,
    as long as there are no more PyTorch threads than workers, the case on
    few cores); ``buffers`` is a dict private to the worker (for scratch
    tensors reused across its chunks). The caller's grad and inference
    modes apply in the workers. The first exception raised in a worker is
    raised here once every worker has stopped. ``workers`` None:
    :func:`num_chunk_workers` for ``bytes_per_worker``.
    """
    if workers is None:
        workers = num_chunk_workers(device, len(chunks), bytes_per_worker)
    if workers <= 1:
        buffers: dict = {}
        for chunk in chunks:
            work(chunk, buffers)
        return

    threads = torch.get_num_threads()
    grad = torch.is_grad_enabled()
    inference = torch.is_inference_mode_enabled()
    errors: List[BaseException] = []
    # Each worker sets its own thread count; PyTorch keeps the last count
    # set as the default for threads that start later, so it is put back
    # as soon as every worker has set its own.
    started = threading.Barrier(workers + 1)
    # Chunks are handed out in order as workers come free (next() on a
    # count is atomic under the GIL): none waits at the end for another
    # that drew slower chunks.
    taken = itertools.count()

    def worker() -> None:
        # A thread takes PyTorch's default count at its first use of it:
        # first that, then its own count, or the default set back below
        # would win.
        torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        started.wait()
        buffers: dict = {}
        try:
            with torch.inference_mode(inference), \
                    torch.set_grad_enabled(grad):
                for index in taken:
                    if index >= len(chunks) or errors:
                        break
                    work(chunks[index], buffers)
        except BaseException as error:  # re-raised in the caller
            errors.append(error)

    pool = [
        threading.Thread(target=worker, daemon=True) for _ in range(workers)
    ]
    for thread in pool:
        thread.start()
    started.wait()
    torch.set_num_threads(threads)
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
