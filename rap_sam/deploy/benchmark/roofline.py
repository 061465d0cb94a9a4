"""The machine's limit: its matrix-multiply peak per precision and the
fastest the network could be at it."""
import copy
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from rap_sam.utils.cpu_features import cpu_has_bf16
from .runners import Clock

#: Matrix products ``(m, k, n)`` timed for the roofline: a square GEMM,
#: and the neck's 3x3 convolution at 800x1344 as an im2col product
#: (200 * 336 stride-4 pixels x 9 * 128 inputs -> 128 outputs); GPUs also
#: get a larger square, which a 2048 one does not fill.
ROOFLINE_SHAPES = ((2048, 2048, 2048), (67200, 1152, 128))
ROOFLINE_SHAPES_CUDA = ((8192, 8192, 8192), ) + ROOFLINE_SHAPES
ROOFLINE_DTYPES = dict(
    fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)


def matmul_throughput(device: Union[str, torch.device],
                      precision: str = 'fp32',
                      shapes: Optional[Sequence[Tuple[int, int, int]]] = None,
                      repeats: int = 3) -> Dict[str, float]:
    """GMAC/s of ``torch.mm`` in ``precision`` on ``device`` with the
    threads torch uses now, per shape ``'MxKxN'``: the best of ``repeats``
    timed products after an untimed one (the best, as a peak is what the
    machine can do, not what load leaves of it)."""
    device = torch.device(device)
    if shapes is None:
        shapes = (
            ROOFLINE_SHAPES_CUDA if device.type == 'cuda' else ROOFLINE_SHAPES)
    dtype = ROOFLINE_DTYPES[precision]
    clock = Clock(device)
    out = {}
    for m, k, n in shapes:
        # The values do not matter, only that they are finite and dense.
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        c = torch.empty(m, n, device=device, dtype=dtype)
        torch.mm(a, b, out=c)
        best = float('inf')
        for _ in range(repeats):
            start = clock()
            torch.mm(a, b, out=c)
            best = min(best, clock() - start)
        out[f'{m}x{k}x{n}'] = m * k * n / 1e9 / best
        del a, b, c
    return out


def measure_roofline(device: Union[str, torch.device],
                     precisions: Sequence[str] = ('fp32', ),
                     repeats: int = 3) -> dict:
    """The machine's matrix-multiply peak (:func:`matmul_throughput`, best
    over the shapes) in fp32 and in each of ``precisions`` that
    ``torch.mm`` has (bf16, fp16); a precision without one (int8) or whose
    product fails on this device is listed in ``'skipped'`` with the
    reason."""
    device = torch.device(device)
    gmacs, skipped = {}, {}
    for precision in dict.fromkeys(('fp32', *precisions)):
        if precision not in ROOFLINE_DTYPES:
            skipped[precision] = (
                f'no {precision} torch.mm to measure its peak with')
            continue
        if (precision == 'bf16' and device.type == 'cpu'
                and cpu_has_bf16() is False):
            # Without bf16 kernels a 2048-square product takes a minute.
            skipped[precision] = ('this CPU has neither AVX-512 BF16 nor '
                                  'AMX: no bf16 peak to measure')
            continue
        try:
            gmacs[precision] = matmul_throughput(
                device, precision, repeats=repeats)
        except RuntimeError as err:  # a dtype this device has no mm for
            lines = str(err).strip().splitlines() or ['']
            skipped[precision] = f'torch.mm failed: {lines[0][:200]}'
    return dict(
        device=str(device),
        threads=torch.get_num_threads(),
        repeats=repeats,
        gmac_per_s=gmacs,
        peak_gmac_per_s={
            p: max(v.values())
            for p, v in gmacs.items()
        },
        skipped=skipped)


def best_of_rooflines(runs: Sequence[dict]) -> dict:
    """Several :func:`measure_roofline` runs of one benchmark (before and
    after its timed rounds) as one: each shape's best throughput, so that
    load on the machine at one moment does not lower the peak."""
    out = copy.deepcopy(runs[0])
    for run in runs[1:]:
        for precision, shapes in run['gmac_per_s'].items():
            best = out['gmac_per_s'].setdefault(precision, {})
            for shape, value in shapes.items():
                best[shape] = max(best.get(shape, 0.), value)
            out['skipped'].pop(precision, None)
    out['repeats'] = sum(run['repeats'] for run in runs)
    out['peak_gmac_per_s'] = {
        p: max(v.values())
        for p, v in out['gmac_per_s'].items()
    }
    return out


def roofline_bounds(measured: dict, model_gmac: Optional[float],
                    precisions: Dict[str, str],
                    medians: Dict[str, Dict[str, float]]) -> dict:
    """What the peaks in ``measured`` (:func:`measure_roofline`) allow:
    the network's floor in each precision (``model_gmac`` / peak: the
    fastest the encoder and decoder can be when every multiply-add runs at
    the peak) and, per variant (``precisions``: name -> precision), the
    floor against its measured network time and, when ``medians`` holds
    ``'mask2former'``, the largest speed-up over it this machine allows:
    Mask2Former's end to end over (floor + the variant's measured
    preprocessing and post-processing), next to the measured one.

    A variant whose network ran faster than the floor shows that the peak
    was measured low (other jobs took the cores while ``torch.mm`` ran):
    it is named in ``'below_floor'``, and the bounds are then no limits.

    ``model_gmac`` None (not counted): every floor is unknown."""
    peaks = measured['peak_gmac_per_s']
    out = dict(
        measured,
        model_gmac=model_gmac,
        floor_s=None,
        variants={},
        below_floor=[])
    if model_gmac is not None:
        out['floor_s'] = {p: model_gmac / peak for p, peak in peaks.items()}
    m2f = medians.get('mask2former')
    for name, precision in precisions.items():
        med = medians[name]
        entry = dict(
            precision=precision,
            network_s=med.get('encoder', 0.) + med.get('head', 0.))
        floor = (out['floor_s'] or {}).get(precision)
        if floor is None:
            entry['floor_s'] = None
            entry['why_no_floor'] = (
                "the model's GMAC were not counted (--no-flops, or the "
                'count failed)'
                if model_gmac is None else measured['skipped'].get(
                    precision, f'no {precision} peak measured'))
            out['variants'][name] = entry
            continue
        entry['floor_s'] = floor
        entry['network_vs_floor'] = entry['network_s'] / floor
        if entry['network_s'] < floor:
            out['below_floor'].append(name)
        entry['bound_s'] = floor + med.get('pre', 0.) + med.get('post', 0.)
        if m2f is not None:
            entry['max_vs_mask2former'] = m2f['e2e'] / entry['bound_s']
            entry['vs_mask2former'] = m2f['e2e'] / med['e2e']
        out['variants'][name] = entry
    return out
