"""What the CPU computes fast, read from ``/proc/cpuinfo`` (Linux).

bfloat16 is fast only with AVX-512 BF16 or AMX: elsewhere OpenVINO
computes a bf16 request in fp32, and torch computes bf16 many times
slower than fp32 (on an AVX2-only AMD EPYC, 2 threads: a 3x3 conv 12x,
a 2048-square ``torch.mm`` 600x). Nothing here imports torch (a
deployment may have none).
"""
from typing import FrozenSet, Optional

#: The ``/proc/cpuinfo`` flags that give bfloat16 matrix products.
BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
#: The flags of an int8 dot product summed in int32 (VNNI, AMX); without
#: one, x86 int8 kernels add pairs of products in int16, which saturates.
VNNI_FLAGS = ('avx512_vnni', 'avx_vnni', 'amx_int8')


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> Optional[FrozenSet[str]]:
    """The first processor's feature flags, or None where ``cpuinfo``
    cannot be read or lists none (not Linux, a restricted container)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_bf16(cpuinfo: str = '/proc/cpuinfo') -> Optional[bool]:
    """Whether the CPU has bfloat16 matrix instructions (AVX-512 BF16 or
    AMX); None where its flags cannot be read."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return any(flag in flags for flag in BF16_FLAGS)


def cpu_has_vnni(cpuinfo: str = '/proc/cpuinfo') -> Optional[bool]:
    """Whether the CPU has an int8 dot product summed in int32 (AVX-512
    VNNI, AVX-VNNI or AMX); None where its flags cannot be read."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    return any(flag in flags for flag in VNNI_FLAGS)


def no_bf16_notice(precision: str, fallback: str) -> str:
    """The one line said when ``precision`` (a bf16 precision) is asked of
    a CPU without bfloat16 instructions; ``fallback`` says what happens
    instead."""
    return (f'precision {precision!r}: this CPU has neither AVX-512 BF16 '
            f'nor AMX, so {fallback}; use fp32 (or int8 from an int8 '
            'export) here.')
