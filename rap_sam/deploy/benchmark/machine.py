"""The machine a benchmark runs on: CPU and GPU, load, glibc's allocator."""
import ctypes
import ctypes.util
import os
import platform
from typing import List, Optional

import torch

from rap_sam.utils.cpu_features import cpu_flags

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
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    if flags is not None:
        info['cpu_cores'] = os.cpu_count()
        info['avx512'] = 'avx512f' in flags
        info['avx512_bf16'] = 'avx512_bf16' in flags
        info['amx_bf16'] = 'amx_bf16' in flags
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        # PyTorch lets convolutions (not matrix products) use TF32 by
        # default: fp32 outputs then differ from the CPU's by about 1e-3.
        info['tf32_conv'] = torch.backends.cudnn.allow_tf32
        info['tf32_matmul'] = torch.backends.cuda.matmul.allow_tf32
    return info


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
